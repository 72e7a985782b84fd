//! Moving bytes between the two sockets of one connection pair, and how the pair ended.
//!
//! Each direction is a pump that holds a bounded amount of data: it reads only while it has room,
//! so a peer that stops reading eventually stops the proxy reading from the other peer, and the
//! kernel's flow control does the rest (backpressure, R4). Two pumps exist: [`Transfer::Buffered`]
//! moves bytes through a user-space buffer, [`Transfer::Splice`] moves them through a pipe with
//! `splice(2)` and never copies them into the proxy (Linux only, see [`splice`]).

pub mod splice;

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::timeout_at;

use crate::BUFFER_SIZE;

/// How a pump moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// `read` into a buffer of [`BUFFER_SIZE`] bytes, `write` out of it.
    Buffered,
    /// `splice` through a pipe of [`self::splice::PIPE_SIZE`] bytes (zero-copy) once a
    /// direction carries bulk data; small messages go through a buffer.
    Splice,
}

/// One end of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client's connection, accepted by the proxy.
    Client,
    /// The proxy's connection to the destination.
    Server,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Server => "server",
        })
    }
}

/// Why a pair ended: the last word of its accounting line.
#[derive(Debug)]
pub enum Ending {
    /// Both sides sent EOF and everything read was delivered.
    BothEof,
    /// A peer reset or aborted its connection (or was gone when written to): an ordinary way
    /// for a peer to leave, not a proxy error (R6).
    Reset(Side),
    /// Data for this side could not be delivered for a whole stall timeout (R7).
    Stalled(Side),
    /// Reading from or writing to this side failed otherwise.
    Failed(Side, io::Error),
    /// The proxy was stopping and the grace period ran out.
    Shutdown,
    /// The server side could not be opened: no pair ever existed.
    DialFailed(String),
    /// A front's client did not finish its handshake, or was refused in it.
    Handshake(String),
}

impl Ending {
    /// The ending for an I/O error on `side`: resets and aborts are a peer leaving.
    pub(crate) fn from_error(side: Side, error: io::Error) -> Ending {
        match error.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Ending::Reset(side),
            _ => Ending::Failed(side, error),
        }
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::BothEof => f.write_str("both EOF"),
            Ending::Reset(side) => write!(f, "reset by {side}"),
            Ending::Stalled(side) => write!(f, "stall timeout toward {side}"),
            Ending::Failed(side, e) => write!(f, "{side} failed: {e}"),
            Ending::Shutdown => f.write_str("closed at shutdown"),
            Ending::DialFailed(why) => f.write_str(why),
            Ending::Handshake(why) => write!(f, "handshake: {why}"),
        }
    }
}

/// Bytes delivered each way, counted as they are written.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Client to server.
    pub up: AtomicU64,
    /// Server to client.
    pub down: AtomicU64,
}

/// One direction of a pair: where bytes come from and go to.
#[derive(Clone, Copy)]
pub struct Direction<'a> {
    /// The socket bytes are read from.
    pub from: &'a TcpStream,
    /// The socket they are written to.
    pub to: &'a TcpStream,
    /// Which end `from` is.
    pub from_side: Side,
    /// Which end `to` is.
    pub to_side: Side,
    /// How long held data may go undelivered before the pair is aborted (R7).
    pub stall_timeout: Duration,
    /// Where delivered bytes are counted.
    pub moved: &'a AtomicU64,
}

impl Direction<'_> {
    /// How the pair ends when reading from `from` failed with `e`.
    pub fn read_failed(&self, e: io::Error) -> Ending {
        Ending::from_error(self.from_side, e)
    }

    /// How the pair ends when writing to `to` failed with `e`.
    pub fn write_failed(&self, e: io::Error) -> Ending {
        Ending::from_error(self.to_side, e)
    }

    /// Passes the EOF on: everything read has been delivered by now (R5). When the other
    /// direction has ended already, the pair is done and the close that [`relay`]'s caller
    /// makes next sends the same FIN: the shutdown is left out, a system call per connection.
    pub fn finish(&self) -> Result<(), Ending> {
        if self.other_way_done() {
            return Ok(());
        }
        match socket2::SockRef::from(self.to).shutdown(Shutdown::Write) {
            // The receiver already went away; the other direction will find out for itself.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            result => result.map_err(|e| self.write_failed(e)),
        }
    }

    /// Whether the other direction has passed its EOF on. It did so by shutting `from` down
    /// for writing; `from`'s own EOF has just been read here, so `from` is then shut down both
    /// ways, which epoll reports as a hang-up (tokio's write-closed readiness, which stays set).
    /// A hang-up with an error is a reset instead, which leaves the shutdown to be made. Read
    /// from the readiness tokio already holds, without a system call and without waiting: when
    /// it does not say so, the shutdown is made, as it always may be.
    fn other_way_done(&self) -> bool {
        use std::future::Future;
        use std::task::{Context, Poll, Waker};
        let ready = std::pin::pin!(self.from.ready(Interest::WRITABLE | Interest::ERROR));
        matches!(
            ready.poll(&mut Context::from_waker(Waker::noop())),
            Poll::Ready(Ok(r)) if r.is_write_closed() && !r.is_error()
        )
    }

    /// Counts `n` bytes delivered.
    pub fn delivered(&self, n: usize) {
        self.moved.fetch_add(n as u64, Relaxed);
    }

    /// When held data must have moved, counted from now.
    pub fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(Instant::now() + self.stall_timeout)
    }
}

/// Relays between `client` and `server` until both directions have ended, counting what each
/// direction delivered in `traffic`.
///
/// On [`Ending::BothEof`] the last EOF may not have been passed on yet ([`Direction::finish`]):
/// the caller closes both sockets next, and that close sends it.
///
/// On any ending but [`Ending::BothEof`] both sockets are set to close with a reset, so each peer
/// learns at once that the pair is gone rather than reading a FIN it could take for a clean end.
pub async fn relay(
    client: &TcpStream,
    server: &TcpStream,
    stall_timeout: Duration,
    copy: Transfer,
    traffic: &Traffic,
) -> Ending {
    let up = Direction {
        from: client,
        to: server,
        from_side: Side::Client,
        to_side: Side::Server,
        stall_timeout,
        moved: &traffic.up,
    };
    let down = Direction {
        from: server,
        to: client,
        from_side: Side::Server,
        to_side: Side::Client,
        stall_timeout,
        moved: &traffic.down,
    };
    let result = match copy {
        Transfer::Buffered | Transfer::Splice => tokio::try_join!(pump(up, copy), pump(down, copy)),
    };
    match result {
        Ok(_) => Ending::BothEof,
        Err(ending) => {
            abort(client, server);
            ending
        }
    }
}

/// Makes closing both sockets send a reset.
pub fn abort(client: &TcpStream, server: &TcpStream) {
    for stream in [client, server] {
        let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
    }
}

/// Copies one direction through a buffer until EOF, then shuts the writing side down (R5).
///
/// Bytes are read into the thread's scratch buffer and written on at once; only what the
/// receiver cannot take at once is copied into a buffer of the pair's own, which lives until it
/// is delivered. An idle connection, or one that carries requests and replies, so holds no
/// buffer at all. A read takes at most [`SMALL_BUFFER`] bytes until one fills that, then
/// [`BUFFER_SIZE`]: that bounds what a direction holds (R4). Writing restarts the stall clock
/// whenever any byte goes out (R7); reads have no timeout, so an idle connection is never
/// aborted.
///
/// With `copy` set to [`Transfer::Splice`], a read that fills the whole [`BUFFER_SIZE`]
/// (bulk data, not a request or a reply) hands the direction over to
/// [`self::splice::pump`]: small messages never pay for making pipes, bulk never copies.
pub async fn pump(dir: Direction<'_>, copy: Transfer) -> Result<(), Ending> {
    let mut room = SMALL_BUFFER;
    loop {
        // poll_read_ready, not readable(): it keeps the waker in the socket's registration
        // instead of a waiter in the future, which makes an idle pair's task smaller (only
        // this pump reads this socket, so the one waker slot is enough).
        std::future::poll_fn(|cx| dir.from.poll_read_ready(cx))
            .await
            .map_err(|e| dir.read_failed(e))?;
        let (n, rest) = match move_now(&dir, room)? {
            Moved::Eof => return dir.finish(),
            // Readiness without data (it happens once on a fresh socket).
            Moved::Nothing => continue,
            Moved::Bytes(n, rest) => (n, rest),
        };
        if !rest.is_empty() {
            write_all(&dir, &rest).await?;
        }
        if n == room {
            if room < BUFFER_SIZE {
                room = BUFFER_SIZE;
            } else if copy == Transfer::Splice {
                // Boxed: only a direction that carries bulk pays for the pipe's state.
                return Box::pin(self::splice::pump(dir)).await;
            }
        }
    }
}

/// The buffer a direction starts with: enough for a request or a reply.
pub const SMALL_BUFFER: usize = 4 * 1024;

thread_local! {
    /// Where every pump of this thread reads into. It is borrowed only between a read and the
    /// writes that follow it, never across an await, so the pumps of one event loop can share
    /// it.
    static SCRATCH: std::cell::RefCell<Box<[std::mem::MaybeUninit<u8>]>> =
        std::cell::RefCell::new(Box::new_uninit_slice(BUFFER_SIZE));
}

/// What one read, and the writes right after it, did.
enum Moved {
    Eof,
    Nothing,
    /// Bytes read, and those of them that the receiver could not take yet.
    Bytes(usize, Vec<u8>),
}

/// Reads up to `room` bytes into the scratch buffer and writes them on as far as the receiver
/// takes them without waiting.
fn move_now(dir: &Direction<'_>, room: usize) -> Result<Moved, Ending> {
    SCRATCH.with_borrow_mut(|scratch| {
        let space = &mut scratch[..room];
        // Read before the read: a FIN that had come by then is behind whatever the read takes.
        let fin_came = read_closed(dir.from);
        let mut n = 0;
        let read = dir.from.try_io(Interest::READABLE, || {
            n = read_fd(dir.from.as_raw_fd(), space)?;
            if n > 0 && n < room {
                // A short read emptied the socket: report "would block" so that its readiness
                // is cleared now, rather than by one more read that finds nothing.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        match read {
            Ok(()) if n == 0 => return Ok(Moved::Eof),
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && n > 0 => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Moved::Nothing),
            Err(e) => return Err(dir.read_failed(e)),
        }
        // SAFETY: read(2) initialized the first `n` bytes.
        let data = unsafe { std::slice::from_raw_parts(space.as_ptr().cast::<u8>(), n) };
        // A short read took everything up to the FIN: the next read is the EOF, and the
        // shutdown follows these bytes at once, so they may wait for it and leave in its segment.
        let fin_follows = fin_came && n < room;
        let mut written = 0;
        while written < n {
            match send(dir.to, &data[written..], fin_follows) {
                Ok(k) => {
                    written += k;
                    dir.delivered(k);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(dir.write_failed(e)),
            }
        }
        Ok(Moved::Bytes(n, data[written..].to_vec()))
    })
}

/// Writes all of `data`, restarting the stall clock with every byte that goes out (R7).
///
/// The write is tried first: a socket is nearly always writable, and only a peer that reads
/// slowly makes the pump wait, in a future boxed for the wait, so that the timer's state is no
/// part of every pair's memory.
async fn write_all(dir: &Direction<'_>, data: &[u8]) -> Result<(), Ending> {
    let mut written = 0;
    // Read the clock only when a wait begins: the stall clock restarts with every byte that goes
    // out, and most writes never wait.
    let mut deadline = None;
    while written < data.len() {
        match dir.to.try_write(&data[written..]) {
            Ok(k) => {
                written += k;
                dir.delivered(k);
                deadline = None;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let until = *deadline.get_or_insert_with(|| dir.deadline());
                let writable = std::future::poll_fn(|cx| dir.to.poll_write_ready(cx));
                match Box::pin(timeout_at(until, writable)).await {
                    Err(_) => return Err(Ending::Stalled(dir.to_side)),
                    Ok(Err(e)) => return Err(dir.write_failed(e)),
                    Ok(Ok(())) => {}
                }
            }
            Err(e) => return Err(dir.write_failed(e)),
        }
    }
    Ok(())
}

/// Whether `stream`'s peer has sent its FIN, as far as the readiness tokio already holds says
/// (epoll reported the hang-up of the reading side), without a system call and without waiting.
fn read_closed(stream: &TcpStream) -> bool {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let ready = std::pin::pin!(stream.ready(Interest::READABLE));
    matches!(
        ready.poll(&mut Context::from_waker(Waker::noop())),
        Poll::Ready(Ok(r)) if r.is_read_closed()
    )
}

/// Writes what `to` takes of `data` now. With `fin_follows` (the caller shuts `to` down right
/// after these bytes, whatever happens) they are held back (`MSG_MORE`) for the FIN to leave in
/// the same segment: the peer wakes once for both, and a packet and its acknowledgement are
/// spared on every connection whose last reply ends it. tokio's own writes take no flags.
fn send(to: &TcpStream, data: &[u8], fin_follows: bool) -> io::Result<usize> {
    if !fin_follows {
        return to.try_write(data);
    }
    to.try_io(Interest::WRITABLE, || {
        socket2::SockRef::from(to).send_with_flags(data, libc::MSG_NOSIGNAL | libc::MSG_MORE)
    })
}

/// `read(2)` on a socket tokio has made non-blocking, into memory that need not be initialized
/// (zeroing a buffer for every connection costs more than the read).
fn read_fd(fd: std::os::fd::RawFd, buf: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length, and read(2) only writes; the descriptor
    // is open for the call.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
