//! Zero-copy relaying on Linux: `splice(2)` from the sending socket into a pipe, and from the
//! pipe into the receiving socket. The bytes stay in kernel pages; the proxy only moves page
//! references, which is what makes one stream faster than any read/write copy.
//!
//! The pipe is this direction's buffer, so the rules stay as exact as with a user-space one: it
//! holds at most [`PIPE_SIZE`] bytes and nothing is read while it is full (R4), the EOF is passed
//! on only once the pipe is empty (R5), and the stall clock runs while the pipe holds data that
//! cannot be written (R7). A direction comes here from the buffered copy once it carries bulk
//! data (a read filled the whole buffer), so a pair that only exchanges small messages, or
//! none, never makes a pipe.
//!
//! Elsewhere than Linux, [`pump`] is the buffered copy.

#[cfg(not(target_os = "linux"))]
/// Without splice, a direction stays with the buffered copy.
pub async fn pump(dir: crate::relay::Direction<'_>) -> Result<(), crate::relay::Ending> {
    Box::pin(crate::relay::pump(dir, crate::relay::Transfer::Buffered)).await
}

#[cfg(target_os = "linux")]
pub use linux::pump;
#[cfg(target_os = "linux")]
pub(crate) use linux::{splice, Pipe};

/// Bytes a direction's pipe may hold. A bigger pipe moves more per system call; 1 MiB is the
/// most an unprivileged process may ask for by default (`/proc/sys/fs/pipe-max-size`).
pub const PIPE_SIZE: usize = 1024 * 1024;

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    use tokio::io::Interest;
    use tokio::time::sleep_until;

    use super::PIPE_SIZE;
    use crate::relay::{Direction, Ending, Transfer};

    /// A non-blocking pipe and what it can hold.
    pub(crate) struct Pipe {
        pub(crate) read: OwnedFd,
        pub(crate) write: OwnedFd,
        pub(crate) capacity: usize,
    }

    impl Pipe {
        pub(crate) fn new() -> io::Result<Pipe> {
            let mut fds = [0 as RawFd; 2];
            // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: pipe2 succeeded, so both descriptors are open and now owned here only.
            let (read, write) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            // A smaller pipe (the system's limit may be lower) only costs speed.
            // SAFETY: fcntl on a descriptor we own, with integer arguments.
            unsafe {
                libc::fcntl(
                    write.as_raw_fd(),
                    libc::F_SETPIPE_SZ,
                    PIPE_SIZE as libc::c_int,
                )
            };
            // SAFETY: as above.
            let capacity = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
            let capacity = if capacity > 0 {
                capacity as usize
            } else {
                64 * 1024
            };
            Ok(Pipe {
                read,
                write,
                capacity,
            })
        }
    }

    /// Moves up to `len` bytes from `from` to `to` without blocking.
    pub(crate) fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        // SAFETY: plain descriptors, null offsets (both are streams), flags only.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// What one attempt to fill the pipe gave.
    enum Fill {
        Bytes(usize),
        Eof,
        /// The pipe has no free slot (a slot holds one page reference, however few bytes the
        /// socket put in it), so only draining it helps.
        PipeFull,
    }

    /// Relays one direction through a pipe until EOF, then shuts the writing side down.
    pub async fn pump(dir: Direction<'_>) -> Result<(), Ending> {
        let mut pipe: Option<Pipe> = None;
        let mut held = 0usize;
        let mut eof = false;
        let mut pipe_full = false;
        let mut deadline = dir.deadline();
        loop {
            if held == 0 {
                if eof {
                    return dir.finish();
                }
                if pipe.is_none() {
                    // Wait for data (or EOF) before making a pipe: readiness alone can be
                    // reported before any byte arrives, and an idle pair should cost nothing.
                    dir.from
                        .peek(&mut [0u8; 1])
                        .await
                        .map_err(|e| dir.read_failed(e))?;
                    match Pipe::new() {
                        Ok(new) => pipe = Some(new),
                        // Out of descriptors: copying through a buffer needs none.
                        Err(_) => {
                            return Box::pin(crate::relay::pump(dir, Transfer::Buffered)).await
                        }
                    }
                } else {
                    dir.from.readable().await.map_err(|e| dir.read_failed(e))?;
                }
                let pipe = pipe.as_ref().expect("made above");
                // With the pipe empty, "would block" can only mean the socket has nothing, so
                // try_io may clear the socket's readiness.
                let filled = dir.from.try_io(Interest::READABLE, || {
                    splice(dir.from.as_raw_fd(), pipe.write.as_raw_fd(), pipe.capacity)
                });
                match filled {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        held = n;
                        deadline = dir.deadline();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(dir.read_failed(e)),
                }
                continue;
            }
            let p = pipe.as_ref().expect("data is held only in a pipe");
            let may_read = !eof && !pipe_full && held < p.capacity;
            tokio::select! {
                biased;
                ready = dir.to.writable() => {
                    ready.map_err(|e| dir.write_failed(e))?;
                    // The pipe holds data, so "would block" means the socket is full.
                    let drained = dir.to.try_io(Interest::WRITABLE, || {
                        splice(p.read.as_raw_fd(), dir.to.as_raw_fd(), held)
                    });
                    match drained {
                        Ok(n) => {
                            held -= n;
                            dir.delivered(n);
                            pipe_full = false;
                            deadline = dir.deadline();
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(dir.write_failed(e)),
                    }
                }
                ready = dir.from.readable(), if may_read => {
                    ready.map_err(|e| dir.read_failed(e))?;
                    let filled = dir.from.try_io(Interest::READABLE, || {
                        match splice(dir.from.as_raw_fd(), p.write.as_raw_fd(), p.capacity - held) {
                            Ok(0) => Ok(Fill::Eof),
                            Ok(n) => Ok(Fill::Bytes(n)),
                            // A full pipe and an empty socket look alike here. Reporting "full"
                            // keeps the socket's readiness, and reading waits for the next drain,
                            // so neither a lost wakeup nor a busy loop can follow.
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Fill::PipeFull),
                            Err(e) => Err(e),
                        }
                    });
                    match filled {
                        Ok(Fill::Bytes(n)) => held += n,
                        Ok(Fill::Eof) => eof = true,
                        Ok(Fill::PipeFull) => pipe_full = true,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(dir.read_failed(e)),
                    }
                }
                () = sleep_until(deadline) => return Err(Ending::Stalled(dir.to_side)),
            }
        }
    }
}
