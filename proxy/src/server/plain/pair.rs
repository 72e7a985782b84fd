//! One pair of the plain loop: its two sockets, what epoll has said of each, and a pump per
//! direction that moves bytes as far as the sockets allow without waiting.
//!
//! The rules are those of [`crate::relay`], kept the same way: a direction reads only while it
//! holds nothing undelivered, at most [`SMALL_BUFFER`] bytes until a read fills that and then
//! [`BUFFER_SIZE`], or a pipe's worth once it carries bulk data (backpressure, R4); the EOF is
//! passed on once everything read is delivered (R5); the stall clock runs while held data
//! cannot be written and restarts with every byte that goes out (R7); a reset or a failed write
//! ends the pair with a reset both ways (R6). Readiness is edge-triggered: a flag is set by an
//! event and cleared only by a call that would block, or by a read too short to have left
//! anything behind.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::sys;
use crate::relay::splice::{splice, Pipe};
use crate::relay::{Ending, Side, Transfer, SMALL_BUFFER};
use crate::BUFFER_SIZE;

/// What epoll has said of one socket since a call last found it otherwise.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Ready {
    readable: bool,
    writable: bool,
    /// The peer's FIN has arrived: a read that leaves room in its buffer has read the last
    /// byte, and the read that would return 0 need not be made.
    fin: bool,
    /// An error is pending (a reset): reads and writes must be made to report it, and a FIN
    /// seen before it no longer ends the stream cleanly.
    error: bool,
    /// Hung up or failed: a connect under way has failed.
    broken: bool,
}

impl Ready {
    /// Takes in an event's flags.
    pub(super) fn note(&mut self, events: u32) {
        let has = |flag: libc::c_int| events & flag as u32 != 0;
        let error = has(libc::EPOLLERR);
        let hangup = has(libc::EPOLLHUP);
        self.readable |= has(libc::EPOLLIN) || has(libc::EPOLLRDHUP) || hangup || error;
        self.writable |= has(libc::EPOLLOUT) || hangup || error;
        self.fin |= has(libc::EPOLLRDHUP);
        self.error |= error;
        self.broken |= error || hangup;
    }
}

/// How a pair's relay stands after moving what it could.
pub(super) enum Flow {
    /// Nothing more can move until epoll reports something.
    Waiting,
    /// The pair used its share of this turn and may have more to move: it is driven again
    /// before the loop waits, so that one bulk pair cannot keep the others waiting.
    Busy,
    /// Both directions ended and passed their EOF on.
    Finished,
}

/// Steps one pair may take per turn of the loop.
const BUDGET: u32 = 32;

/// The settings a pair's pumps follow, from its mapping and the process's options.
#[derive(Clone, Copy)]
pub(super) struct Rules {
    pub(super) stall_timeout: Duration,
    pub(super) copy: Transfer,
}

/// A connection pair: the client's socket, and the destination's, dialed or being dialed.
pub(super) struct Pair {
    client: OwnedFd,
    server: OwnedFd,
    pub(super) client_ready: Ready,
    pub(super) server_ready: Ready,
    /// While the destination is being dialed: when the dial gives up (R8).
    dialing: Option<Instant>,
    /// Client to server.
    up: Pump,
    /// Server to client.
    down: Pump,
}

impl Pair {
    /// A pair whose dial is under way, given up at `dial_deadline`.
    pub(super) fn new(client: OwnedFd, server: OwnedFd, dial_deadline: Instant) -> Pair {
        Pair {
            client,
            server,
            // A socket just accepted has room to write; saying so saves holding the first
            // bytes for the destination until epoll says it too.
            client_ready: Ready {
                writable: true,
                ..Ready::default()
            },
            server_ready: Ready::default(),
            dialing: Some(dial_deadline),
            up: Pump::default(),
            down: Pump::default(),
        }
    }

    pub(super) fn client_fd(&self) -> RawFd {
        self.client.as_raw_fd()
    }

    pub(super) fn server_fd(&self) -> RawFd {
        self.server.as_raw_fd()
    }

    /// Bytes delivered so far: client to server, server to client.
    pub(super) fn traffic(&self) -> (u64, u64) {
        (self.up.moved, self.down.moved)
    }

    /// Whether the dial is over: `Ok(true)` the moment it succeeded, `Ok(false)` later on,
    /// `None` while it is under way.
    pub(super) fn connected(&mut self) -> Option<Result<bool, Ending>> {
        if self.dialing.is_none() {
            return Some(Ok(false));
        }
        if self.server_ready.broken {
            let e = sys::connect_error(&self.server);
            return Some(Err(Ending::DialFailed(format!("dial failed: {e}"))));
        }
        if !self.server_ready.writable {
            return None;
        }
        self.dialing = None;
        Some(Ok(true))
    }

    /// Ends the dial's hold on its handshake's last acknowledgement: called once, after the
    /// pair's first turn, in which the client's first bytes (if they had come) carried it.
    pub(super) fn release_handshake_ack(&self) {
        sys::release_handshake_ack(&self.server);
    }

    /// The next time something about this pair must be checked, if any.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.dialing.or(match (self.up.stall, self.down.stall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Why the pair must end now, if a deadline has passed.
    pub(super) fn expired(&self, now: Instant) -> Option<Ending> {
        let past = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if past(self.dialing) {
            Some(Ending::DialFailed(
                "dial failed: no answer within the stall timeout".into(),
            ))
        } else if past(self.up.stall) {
            Some(Ending::Stalled(Side::Server))
        } else if past(self.down.stall) {
            Some(Ending::Stalled(Side::Client))
        } else {
            None
        }
    }

    /// Moves bytes both ways until nothing can move without waiting, both directions have
    /// ended, or the pair's share of this turn is spent.
    pub(super) fn relay(
        &mut self,
        rules: Rules,
        scratch: &mut [MaybeUninit<u8>],
    ) -> Result<Flow, Ending> {
        for _ in 0..BUDGET {
            let client = End {
                fd: self.client.as_raw_fd(),
                side: Side::Client,
            };
            let server = End {
                fd: self.server.as_raw_fd(),
                side: Side::Server,
            };
            let up = self.up.step(
                (client, &mut self.client_ready),
                (server, &mut self.server_ready),
                self.down.done,
                rules,
                scratch,
            )?;
            let down = self.down.step(
                (server, &mut self.server_ready),
                (client, &mut self.client_ready),
                self.up.done,
                rules,
                scratch,
            )?;
            if self.up.done && self.down.done {
                return Ok(Flow::Finished);
            }
            if !up && !down {
                return Ok(Flow::Waiting);
            }
        }
        Ok(Flow::Busy)
    }

    /// Closes both sockets: as they are after both EOFs (the close sends the last FIN, if
    /// [`Pump::finish`] left it out) or a failed dial, with a reset otherwise, so that each
    /// peer learns at once that the pair is gone rather than reading a FIN it could take for a
    /// clean end.
    pub(super) fn close(self, ending: &Ending) {
        if !matches!(ending, Ending::BothEof | Ending::DialFailed(_)) {
            sys::reset_on_close(&self.client);
            sys::reset_on_close(&self.server);
        }
    }
}

/// One socket of a pair as a pump sees it.
#[derive(Clone, Copy)]
struct End {
    fd: RawFd,
    side: Side,
}

/// One direction of a pair.
#[derive(Default)]
struct Pump {
    /// Bytes read that the receiver could not take yet, from `sent` on. Empty (and without
    /// memory) whenever the receiver keeps up, which is nearly always.
    held: Vec<u8>,
    sent: usize,
    /// How much one read may take: [`SMALL_BUFFER`] until a read fills it, then
    /// [`BUFFER_SIZE`] (0 stands for the first).
    room: usize,
    /// A read filled [`BUFFER_SIZE`]: the direction carries bulk data and, with splice, moves
    /// to a pipe at its next read.
    bulk: bool,
    /// Boxed: only a direction that carries bulk pays for it.
    pipe: Option<Box<Piped>>,
    /// The sender's EOF has been read.
    eof: bool,
    /// The EOF has been passed on (or left to the close): the direction is over.
    done: bool,
    /// When held data must have moved (R7); `None` while nothing waits.
    stall: Option<Instant>,
    /// Bytes delivered.
    moved: u64,
}

/// A direction's pipe, and how much it holds.
struct Piped {
    pipe: Pipe,
    held: usize,
    /// Filling it would block while it holds data: a full pipe and an empty socket look alike,
    /// so reading waits for the next drain, which is neither a lost wake-up nor a busy loop.
    full: bool,
}

impl Pump {
    /// Takes one step: delivers held data, passes the EOF on, or reads and writes on. Returns
    /// whether anything changed.
    fn step(
        &mut self,
        (from, from_ready): (End, &mut Ready),
        (to, to_ready): (End, &mut Ready),
        other_done: bool,
        rules: Rules,
        scratch: &mut [MaybeUninit<u8>],
    ) -> Result<bool, Ending> {
        if self.done {
            return Ok(false);
        }
        if self.pipe.is_some() {
            return self.splice_step((from, from_ready), (to, to_ready), other_done, rules);
        }
        if self.sent < self.held.len() {
            if !to_ready.writable {
                return Ok(false);
            }
            return match sys::send(to.fd, &self.held[self.sent..], self.eof) {
                Ok(n) => {
                    self.sent += n;
                    self.moved += n as u64;
                    if self.sent == self.held.len() {
                        self.held = Vec::new();
                        self.sent = 0;
                        self.stall = None;
                    } else {
                        self.stall = Some(Instant::now() + rules.stall_timeout);
                    }
                    Ok(true)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    to_ready.writable = false;
                    Ok(false)
                }
                Err(e) => Err(Ending::from_error(to.side, e)),
            };
        }
        if self.eof {
            self.finish(to, other_done)?;
            return Ok(true);
        }
        if !from_ready.readable {
            return Ok(false);
        }
        if self.bulk && rules.copy == Transfer::Splice {
            match Pipe::new() {
                Ok(pipe) => {
                    self.pipe = Some(Box::new(Piped {
                        pipe,
                        held: 0,
                        full: false,
                    }));
                    return self.splice_step((from, from_ready), (to, to_ready), other_done, rules);
                }
                // Out of descriptors: copying through a buffer needs none.
                Err(_) => self.bulk = false,
            }
        }
        let room = if self.room == 0 {
            SMALL_BUFFER
        } else {
            self.room
        };
        let n = match sys::read(from.fd, &mut scratch[..room]) {
            Ok(0) => {
                self.eof = true;
                return Ok(true);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                from_ready.readable = false;
                return Ok(false);
            }
            Err(e) => return Err(Ending::from_error(from.side, e)),
        };
        if n < room {
            // The socket is empty now; and after the peer's FIN, this was the last of it. A
            // pending error (a reset that came behind the data) is not empty: the next read
            // reports it, and no further event would.
            if !from_ready.error {
                from_ready.readable = false;
                self.eof = from_ready.fin;
            }
        } else if room < BUFFER_SIZE {
            self.room = BUFFER_SIZE;
        } else {
            self.bulk = true;
        }
        // SAFETY: read(2) initialized the first `n` bytes.
        let data = unsafe { std::slice::from_raw_parts(scratch.as_ptr().cast::<u8>(), n) };
        let mut written = 0;
        while written < n && to_ready.writable {
            match sys::send(to.fd, &data[written..], self.eof) {
                Ok(k) => {
                    written += k;
                    self.moved += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => to_ready.writable = false,
                Err(e) => return Err(Ending::from_error(to.side, e)),
            }
        }
        if written < n {
            self.held = data[written..].to_vec();
            self.sent = 0;
            self.stall = Some(Instant::now() + rules.stall_timeout);
        }
        Ok(true)
    }

    /// [`Pump::step`] for a direction that moves through its pipe.
    fn splice_step(
        &mut self,
        (from, from_ready): (End, &mut Ready),
        (to, to_ready): (End, &mut Ready),
        other_done: bool,
        rules: Rules,
    ) -> Result<bool, Ending> {
        let piped = self.pipe.as_mut().expect("a direction with a pipe");
        let mut changed = false;
        if piped.held > 0 && to_ready.writable {
            match splice(piped.pipe.read.as_raw_fd(), to.fd, piped.held) {
                Ok(n) => {
                    piped.held -= n;
                    piped.full = false;
                    self.moved += n as u64;
                    self.stall = (piped.held > 0).then(|| Instant::now() + rules.stall_timeout);
                    changed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => to_ready.writable = false,
                Err(e) => return Err(Ending::from_error(to.side, e)),
            }
        }
        if piped.held == 0 && self.eof {
            self.finish(to, other_done)?;
            return Ok(true);
        }
        if !self.eof && !piped.full && piped.held < piped.pipe.capacity && from_ready.readable {
            let room = piped.pipe.capacity - piped.held;
            match splice(from.fd, piped.pipe.write.as_raw_fd(), room) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    if piped.held == 0 {
                        self.stall = Some(Instant::now() + rules.stall_timeout);
                    }
                    piped.held += n;
                }
                // With the pipe empty, only the socket can be what is empty.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && piped.held == 0 => {
                    from_ready.readable = false;
                    return Ok(changed);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    piped.full = true;
                    return Ok(changed);
                }
                Err(e) => return Err(Ending::from_error(from.side, e)),
            }
            changed = true;
        }
        Ok(changed)
    }

    /// Passes the EOF on: everything read has been delivered by now (R5). When the other
    /// direction is over already, the pair is done and the close that follows sends the same
    /// FIN: the shutdown is left out, a system call per connection.
    fn finish(&mut self, to: End, other_done: bool) -> Result<(), Ending> {
        self.done = true;
        if other_done {
            return Ok(());
        }
        match sys::shutdown_write(to.fd) {
            // The receiver already went away; the other direction will find out for itself.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            result => result.map_err(|e| Ending::from_error(to.side, e)),
        }
    }
}
