//! Driving a proxy into holding data of its own, and seeing that it does.
//!
//! A proxy with a user-space write buffer (asyncio transports, Go bufio, Node streams) loses
//! the tail of a stream if it shuts the socket down on EOF without flushing that buffer, but
//! only when the buffer holds something at that moment: when the receiver is not reading and
//! every kernel buffer between the proxy and the receiver is full. Random timing rarely gets
//! there; this module gets there on purpose. The sender writes a piece at a time while the
//! receiver reads nothing, and after each piece tprox looks at the kernel's socket queues
//! (through [`TcpTable`]) until the proxy has read the piece. Once the proxy has read more than
//! the kernel holds on its way to the receiver, the rest is in the proxy's own memory.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::probe::TcpTable;

/// The most written at a time once the proxy's socket towards the receiver is nearly full:
/// well under the smallest user-space buffer a proxy commonly has (64 KiB for asyncio's
/// high-water mark), so that the piece that makes the proxy hold data does not also fill its
/// buffer (a proxy with a full buffer stops reading, and would not see an EOF that follows).
const PIECE: usize = 16 * 1024;

/// How long the proxy must keep holding data before it counts as held, or not read before it
/// counts as no longer reading; also how long it gets to act on an EOF.
pub const SETTLE: Duration = Duration::from_millis(100);

/// How long a proxy whose socket towards the receiver has room may take to read a piece
/// before it counts as no longer reading: far beyond any proxy's pace, even an interpreted
/// one on a loaded machine, and short enough that a proxy that really stops costs little.
const SLOW_READER: Duration = Duration::from_secs(3);

/// The sockets of one direction through the proxy: the sender's and the receiver's, each as
/// (local, peer) address. The proxy's own two sockets are the same pairs reversed.
#[derive(Debug, Clone, Copy)]
pub struct Direction {
    /// The sending peer's socket: (local, peer).
    pub sender: (SocketAddr, SocketAddr),
    /// The receiving peer's socket: (local, peer).
    pub receiver: (SocketAddr, SocketAddr),
}

/// Where the bytes the sender wrote are, at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Whereabouts {
    /// Everything written has been read by the proxy: none waits in the sender's socket or in
    /// the proxy's receiving socket.
    pub taken_in: bool,
    /// Bytes the proxy has read and not yet written into its socket towards the receiver: in
    /// its own memory (its buffers, a pipe), where only the proxy can deliver them.
    pub held: u64,
    /// Room left in the proxy's socket towards the receiver, in the kernel's accounting.
    pub room: u64,
}

/// How filling ended.
#[derive(Debug, Clone, Copy)]
pub struct Filled {
    /// Bytes the sender wrote.
    pub written: usize,
    /// What the proxy holds in its own memory (0 when `max` bytes were written first).
    pub held: u64,
    /// The proxy stopped reading from the sender before holding anything for long: the EOF
    /// that follows reaches it only once the receiver reads.
    pub stopped_reading: bool,
}

/// Why filling could not go on.
#[derive(Debug)]
pub enum FillError {
    /// The kernel's socket queues cannot be read here (not Linux).
    Unobservable(String),
    /// A socket of the direction was closed after `written` bytes.
    Closed {
        /// Bytes the sender wrote before.
        written: usize,
    },
    /// The sender's write failed after `written` bytes.
    Write {
        /// Bytes written before the failure.
        written: usize,
        /// The write's error.
        error: std::io::Error,
    },
}

impl Direction {
    /// The direction from `sender` to `receiver`; `None` if either is no longer connected.
    pub fn between(sender: &TcpStream, receiver: &TcpStream) -> Option<Self> {
        let ends = |s: &TcpStream| Some((s.local_addr().ok()?, s.peer_addr().ok()?));
        Some(Direction {
            sender: ends(sender)?,
            receiver: ends(receiver)?,
        })
    }

    /// Locates `written` bytes. `Ok(None)` when a socket of the direction is gone.
    pub fn locate(&self, written: usize) -> Result<Option<Whereabouts>, String> {
        let (s_local, s_peer) = self.sender;
        let (r_local, r_peer) = self.receiver;
        // Four netlink round trips of a few microseconds each: fine inside the runtime.
        let table = TcpTable::read(&[
            (s_local, s_peer),
            (s_peer, s_local),
            (r_peer, r_local),
            (r_local, r_peer),
        ])?;
        let found = || {
            let at_sender = table.queues(s_local, s_peer)?;
            let proxy_in = table.queues(s_peer, s_local)?;
            let proxy_out = table.queues(r_peer, r_local)?;
            let at_receiver = table.queues(r_local, r_peer)?;
            let in_kernel =
                at_sender.send + proxy_in.receive + proxy_out.send + at_receiver.receive;
            Some(Whereabouts {
                taken_in: at_sender.send == 0 && proxy_in.receive == 0,
                held: (written as u64).saturating_sub(in_kernel),
                room: proxy_out.send_room,
            })
        };
        Ok(found())
    }

    /// Writes pieces from `next` (asked for up to so many bytes) into `writer`, the sender's
    /// side, until the proxy holds data of its own, stops reading, or `max` bytes are written.
    /// The receiver must not be reading meanwhile.
    pub async fn fill<W: AsyncWrite + Unpin>(
        &self,
        writer: &mut W,
        max: usize,
        mut next: impl FnMut(usize) -> Vec<u8>,
    ) -> Result<Filled, FillError> {
        let mut written = 0;
        let mut piece = PIECE;
        while written < max {
            let bytes = next(piece.min(max - written));
            if let Err(error) = writer.write_all(&bytes).await {
                return Err(FillError::Write { written, error });
            }
            written += bytes.len();
            let quiet = Instant::now() + SETTLE;
            let slow = Instant::now() + SLOW_READER;
            let mut looks = 0;
            loop {
                looks += 1;
                let now = match self.locate(written) {
                    Err(reason) => return Err(FillError::Unobservable(reason)),
                    Ok(None) => return Err(FillError::Closed { written }),
                    Ok(Some(now)) => now,
                };
                if now.taken_in {
                    if now.held > 0 {
                        // A proxy caught between its read and its write holds data for a
                        // moment too: count only what it still holds a while later, when it
                        // has had every chance to write it.
                        tokio::time::sleep(SETTLE).await;
                        if let Ok(Some(later)) = self.locate(written) {
                            if later.held > 0 {
                                return Ok(Filled {
                                    written,
                                    held: later.held,
                                    stopped_reading: false,
                                });
                            }
                        }
                    }
                    // Pieces of a quarter of the room left: few while the proxy's socket has
                    // room, and small ones as it fills. Not more: the room is counted in the
                    // kernel's units, packet overhead included, and a proxy that reads in
                    // small chunks (an interpreter on a loaded machine) gets less payload in;
                    // a piece that does not fit would leave more than a user-space buffer's
                    // high-water mark behind, the proxy would stop reading, and the EOF that
                    // follows would not reach it.
                    piece = (now.room as usize / 4).clamp(PIECE, 1024 * 1024);
                    break;
                }
                // Not reading counts only where the proxy cannot write either: a proxy whose
                // socket towards the receiver still has room is merely slow (a loaded machine,
                // an interpreter), and calling that "stopped reading" would send the EOF
                // while nothing is held, so that a tail-losing proxy passes by luck.
                let blocked = now.room < PIECE as u64;
                if Instant::now() >= quiet && (blocked || Instant::now() >= slow) {
                    return Ok(Filled {
                        written,
                        held: now.held,
                        stopped_reading: true,
                    });
                }
                // A proxy takes a piece in well under a millisecond: look again at once a few
                // times before sleeping, as there may be hundreds of pieces.
                if looks < 20 {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        Ok(Filled {
            written,
            held: 0,
            stopped_reading: false,
        })
    }

    /// After the sender's shutdown: waits until the proxy has read everything, the FIN
    /// included, then gives it a moment to act on the EOF. A proxy that stopped reading (as
    /// the reference does while a write is pending) reads the EOF only once the receiver
    /// reads, which is fine too: then there is nothing to wait for.
    pub async fn let_proxy_take_eof(&self, filled: &Filled, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !filled.stopped_reading && Instant::now() < deadline {
            match self.locate(filled.written) {
                Ok(Some(now)) if !now.taken_in => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                _ => break,
            }
        }
        tokio::time::sleep(SETTLE).await;
    }
}
