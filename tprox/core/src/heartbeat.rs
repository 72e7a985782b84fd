//! A heartbeat through the proxy, timed by threads of its own: how the blocked-mix cases tell
//! a proxy frozen by one blocked peer from a slow one (R3).
//!
//! While a bulk transfer runs, tprox's own runtime is busy (a debug build on a loaded machine
//! runs its timers half a second late), so a pause that its tasks see is the proxy's pause plus
//! tprox's. A thread that sleeps in the kernel is woken within milliseconds of its event even
//! then, so the heartbeat runs on three threads outside the runtime:
//! * a writer puts a few bytes into one proxied connection every [`BEAT`], and measures how
//!   late it wakes: this machine's scheduling delay, which the verdicts allow for;
//! * a reader takes them where they arrive, notes every pause between arrivals, and echoes
//!   them, so that a proxy may serve the connection as request and response (one direction
//!   at a time is another case's bug, not this one's); the writer takes the echo back;
//! * a watcher notes the moment another socket is closed under it: the proxy giving up on the
//!   blocked connection, which is what ends the freeze of a proxy that blocked in its write.

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How often the writer sends. Short, so that a pause is measured to within a few
/// milliseconds; each beat is a few bytes, so a proxy that moves nothing for minutes still has
/// room for them in its socket buffers.
pub const BEAT: Duration = Duration::from_millis(5);

/// Pauses shorter than this are not kept: they are scheduling, not freezing.
const NOTED: Duration = Duration::from_millis(10);

/// How long a thread waits in the kernel before it looks at the stop flag again, in ms.
const POLL_MS: i32 = 20;

const BEAT_BYTES: &[u8] = b"heartbeat";

/// A running heartbeat. Dropping it stops and joins its threads and closes its connection.
pub struct Heartbeat {
    shared: Arc<Shared>,
    threads: Vec<thread::JoinHandle<()>>,
}

struct Shared {
    stop: AtomicBool,
    state: Mutex<State>,
}

struct State {
    /// When the beats started, and when one last arrived (the start, before the first).
    started: Instant,
    last: Instant,
    /// Finished pauses of at least [`NOTED`]: (when it began, how long it lasted).
    pauses: Vec<(Instant, Duration)>,
    /// How many reads brought beats.
    arrivals: u64,
    /// When the watched socket was closed under tprox.
    closed: Option<Instant>,
    /// The latest that the writer woke after it meant to.
    delay: Duration,
    /// Why the beats stopped arriving for good, if they did.
    ended: Option<String>,
}

/// What the heartbeat saw up to now.
#[derive(Debug, Clone, PartialEq)]
pub struct Beats {
    pub started: Instant,
    /// Every pause of at least 10 ms, the one still going on included (it ends now).
    pub pauses: Vec<(Instant, Duration)>,
    /// How many reads brought beats.
    pub arrivals: u64,
    /// When the watched socket was closed.
    pub closed: Option<Instant>,
    /// The writer thread's worst scheduling delay: how late this machine woke a thread.
    pub delay: Duration,
    /// Why the beats stopped arriving for good (the connection closed or failed), if they did.
    pub ended: Option<String>,
}

impl Heartbeat {
    /// Beats from `client` to `server` (the two ends of one proxied connection), and watches
    /// `watched` for being closed. The connection becomes the heartbeat's; `watched` stays the
    /// caller's (the heartbeat watches a duplicate of its descriptor).
    pub fn start(
        client: tokio::net::TcpStream,
        server: tokio::net::TcpStream,
        watched: &tokio::net::TcpStream,
    ) -> io::Result<Heartbeat> {
        let client = client.into_std()?;
        let server = server.into_std()?;
        let watched: std::net::TcpStream = socket2::SockRef::from(watched).try_clone()?.into();
        let now = Instant::now();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            state: Mutex::new(State {
                started: now,
                last: now,
                pauses: Vec::new(),
                arrivals: 0,
                closed: None,
                delay: Duration::ZERO,
                ended: None,
            }),
        });
        let spawn = |name: &str, body: Box<dyn FnOnce(&Shared) + Send>| {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("tprox-{name}"))
                .spawn(move || body(&shared))
        };
        let threads = vec![
            spawn("beat-writer", Box::new(move |s| write_beats(s, client)))?,
            spawn("beat-reader", Box::new(move |s| read_beats(s, server)))?,
            spawn("close-watch", Box::new(move |s| watch_close(s, watched)))?,
        ];
        Ok(Heartbeat { shared, threads })
    }

    /// What the heartbeat saw up to now.
    pub fn beats(&self) -> Beats {
        let state = self.shared.lock();
        let mut pauses = state.pauses.clone();
        let ongoing = state.last.elapsed();
        if ongoing >= NOTED {
            pauses.push((state.last, ongoing));
        }
        Beats {
            started: state.started,
            pauses,
            arrivals: state.arrivals,
            closed: state.closed,
            delay: state.delay,
            ended: state.ended.clone(),
        }
    }
}

impl Beats {
    /// One line for the trace, with times from `origin` (when the blocked connection blocked).
    pub fn describe(&self, origin: Instant) -> String {
        let since = |at: Instant| {
            let s = if at >= origin {
                (at - origin).as_secs_f64()
            } else {
                -(origin - at).as_secs_f64()
            };
            format!("{s:.2} s")
        };
        let longest = self.pauses.iter().max_by_key(|(_, pause)| *pause);
        let mut line = match longest {
            Some((began, pause)) => format!(
                "longest pause {:.3} s from {} after the block",
                pause.as_secs_f64(),
                since(*began)
            ),
            None => "no pause of 10 ms or more".into(),
        };
        line += &format!(
            " ({} arrival(s), {} pause(s) of 10 ms or more; beats started {} after the block; worst delay of the beat writer {:.1} ms)",
            self.arrivals,
            self.pauses.len(),
            since(self.started),
            self.delay.as_secs_f64() * 1000.0
        );
        if let Some(closed) = self.closed {
            line += &format!(
                "; the blocked connection closed {} after the block",
                since(closed)
            );
        }
        if let Some(ended) = &self.ended {
            line += &format!("; the beats stopped: {ended}");
        }
        line
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn end(&self, why: String) {
        self.lock().ended.get_or_insert(why);
    }
}

fn write_beats(shared: &Shared, mut client: std::net::TcpStream) {
    let mut due = Instant::now();
    while !shared.stopped() {
        due += BEAT;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let woke = Instant::now();
        let late = woke.saturating_duration_since(due);
        {
            let mut state = shared.lock();
            state.delay = state.delay.max(late);
        }
        // After a long delay the next beat is due a beat from now, not at once: the beats
        // stay evenly spread.
        if late > BEAT {
            due = woke;
        }
        // The socket is non-blocking: a beat that does not fit is skipped, never waited for.
        match client.write(BEAT_BYTES) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return shared.end(format!("writing the heartbeat failed: {e}")),
        }
        // Take back what was echoed so far (nothing checks it: the arrivals are timed at the
        // other end).
        let mut echoed = [0u8; 4096];
        while matches!(client.read(&mut echoed), Ok(n) if n > 0) {}
    }
}

fn read_beats(shared: &Shared, mut server: std::net::TcpStream) {
    let mut buf = [0u8; 4096];
    while !shared.stopped() {
        if !matches!(poll_one(server.as_fd(), libc::POLLIN), Ok(revents) if revents != 0) {
            continue;
        }
        loop {
            match server.read(&mut buf) {
                Ok(0) => return shared.end("the proxy closed the heartbeat's connection".into()),
                Ok(n) => {
                    arrived(shared);
                    // Non-blocking; a few bytes every few ms always fit in the send buffer
                    // of a connection whose other end reads them.
                    let _ = server.write(&buf[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    return shared.end(format!("reading the heartbeat failed: {e}"));
                }
            }
        }
    }
}

fn arrived(shared: &Shared) {
    let now = Instant::now();
    let mut state = shared.lock();
    let pause = now - state.last;
    if pause >= NOTED {
        let began = state.last;
        state.pauses.push((began, pause));
    }
    state.last = now;
    state.arrivals += 1;
}

fn watch_close(shared: &Shared, watched: std::net::TcpStream) {
    // Nothing is ever sent to the watched socket in the cases that use this, so readable
    // means an end: EOF (RDHUP), or a reset (ERR, HUP).
    let ended = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR;
    while !shared.stopped() {
        match poll_one(watched.as_fd(), ended | libc::POLLIN) {
            Ok(revents) if revents & ended != 0 => {
                shared.lock().closed = Some(Instant::now());
                return;
            }
            // Data after all: not an end. Look again a beat later rather than spin on it.
            Ok(revents) if revents != 0 => thread::sleep(BEAT),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Waits at most [`POLL_MS`] for `events` on `fd`; the events that came (none: timed out).
fn poll_one(fd: BorrowedFd<'_>, events: libc::c_short) -> io::Result<libc::c_short> {
    let mut pollfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for a descriptor that `fd` keeps open during the call.
    match unsafe { libc::poll(&mut pollfd, 1, POLL_MS) } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(0),
        _ => Ok(pollfd.revents),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    /// Waits (at most 10 s, for a loaded machine) until `done` holds of the beats.
    async fn until(heartbeat: &Heartbeat, done: impl Fn(&Beats) -> bool) -> Beats {
        for _ in 0..1000 {
            let beats = heartbeat.beats();
            if done(&beats) {
                return beats;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("not within 10 s: {:?}", heartbeat.beats());
    }

    /// Direct connections (no proxy): the beats arrive, and closing the watched socket's peer
    /// is seen, after it happened.
    #[tokio::test]
    async fn beats_arrive_and_a_close_is_seen() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (client, server) = pair(&listener).await;
        let (watched, watched_peer) = pair(&listener).await;
        let heartbeat = Heartbeat::start(client, server, &watched).unwrap();
        until(&heartbeat, |b| b.arrivals >= 3).await;
        assert_eq!(heartbeat.beats().closed, None);
        let closing = Instant::now();
        drop(watched_peer);
        let beats = until(&heartbeat, |b| b.closed.is_some()).await;
        assert!(beats.closed.unwrap() >= closing);
        assert_eq!(beats.ended, None);
    }

    /// Beats that never arrive (the writer writes into another connection than the one
    /// the reader reads): the pause goes on, and counts until now.
    #[tokio::test]
    async fn a_pause_that_goes_on_is_counted() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (_silent, server) = pair(&listener).await;
        let (elsewhere, _sink) = pair(&listener).await;
        let (watched, _peer) = pair(&listener).await;
        let heartbeat = Heartbeat::start(elsewhere, server, &watched).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let beats = heartbeat.beats();
        assert_eq!(beats.arrivals, 0);
        // The one pause is the whole time since the start: at least the 300 ms slept.
        let (_, longest) = beats.pauses.iter().max_by_key(|p| p.1).copied().unwrap();
        assert!(longest >= Duration::from_millis(300), "{beats:?}");
        assert_eq!(beats.closed, None);
    }
}
