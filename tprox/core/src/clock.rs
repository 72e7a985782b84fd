//! Time as the proxy lives it, for the cases that judge timing (R7).
//!
//! A timing verdict must mean the same on a fast proxy and a slow one, on an idle machine and a
//! loaded one, at T = 2 s and at T = 10 s. Two things make that so:
//! * [`ProxyWrites`] finds when the proxy itself last wrote towards a peer that reads nothing,
//!   from the kernel's socket queues: the moment its stall clock starts. The writer's own last
//!   progress comes later, by however long a slow proxy takes to stop reading.
//! * [`Lateness`] measures how late tprox's own timers fire while a case runs: the scheduling
//!   delay of this machine now, which the windows allow for instead of a fixed slack.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::probe::TcpTable;

/// How often the queues are looked at: the resolution of [`ProxyWrites::last`].
const SAMPLE: Duration = Duration::from_millis(10);

/// When the proxy last wrote into its socket towards one of tprox's sockets that reads
/// nothing. Everything the proxy has written is in one of two queues, its own socket's send
/// queue or tprox's socket's receive queue, so their sum grows exactly when the proxy writes.
pub struct ProxyWrites {
    last: Arc<Mutex<Option<Instant>>>,
    task: JoinHandle<()>,
}

impl ProxyWrites {
    /// Watches the proxy's writes into `peer`; `None` where the queues cannot be read (not
    /// Linux), and the caller falls back to what it sees itself.
    pub fn watch(peer: &TcpStream) -> Option<Self> {
        let ours = (peer.local_addr().ok()?, peer.peer_addr().ok()?);
        let theirs = (ours.1, ours.0);
        written(ours, theirs)?;
        let last = Arc::new(Mutex::new(None));
        let seen = last.clone();
        let task = tokio::spawn(async move {
            let mut total = 0;
            loop {
                match written(ours, theirs) {
                    // A FIN takes a sequence number of its own: the sum grows by one when the
                    // proxy shuts its socket down, which is no write.
                    Some(now) if now == total + 1 => total = now,
                    Some(now) if now > total => {
                        total = now;
                        *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                    }
                    Some(_) => {}
                    // Gone: the pair was closed, nothing more is written.
                    None => return,
                }
                tokio::time::sleep(SAMPLE).await;
            }
        });
        Some(ProxyWrites { last, task })
    }

    /// When the proxy last wrote (to within [`SAMPLE`]); `None` if it has written nothing.
    pub fn last(&self) -> Option<Instant> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for ProxyWrites {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bytes the proxy has written towards tprox's socket `ours` through its socket `theirs`, as
/// far as the queues still hold them; `None` when tprox's socket is gone or unreadable.
fn written(ours: (SocketAddr, SocketAddr), theirs: (SocketAddr, SocketAddr)) -> Option<u64> {
    let table = TcpTable::read(&[ours, theirs]).ok()?;
    let received = table.queues(ours.0, ours.1)?.receive;
    let queued = table.queues(theirs.0, theirs.1).map_or(0, |q| q.send);
    Some(received + queued)
}

/// How late tprox's timers fire while it watches: the worst delay seen so far.
pub struct Lateness {
    worst_micros: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Lateness {
    const TICK: Duration = Duration::from_millis(10);

    /// Starts watching from now.
    pub fn watch() -> Self {
        let worst_micros = Arc::new(AtomicU64::new(0));
        let worst = worst_micros.clone();
        let task = tokio::spawn(async move {
            loop {
                let asked = Instant::now();
                tokio::time::sleep(Self::TICK).await;
                let late = asked.elapsed().saturating_sub(Self::TICK);
                worst.fetch_max(late.as_micros() as u64, Ordering::Relaxed);
            }
        });
        Lateness { worst_micros, task }
    }

    /// The worst lateness seen so far.
    pub fn worst(&self) -> Duration {
        Duration::from_micros(self.worst_micros.load(Ordering::Relaxed))
    }

    /// The slack a timing window allows on top of its share of T: a tenth of T for a proxy
    /// that checks its clocks a little late, plus [`LATENESS_FACTOR`] times the worst
    /// scheduling delay measured, for the proxy's delay and tprox's own in seeing the close,
    /// plus the queues' sampling interval.
    pub fn slack(&self, stall: Duration) -> Duration {
        stall.mul_f64(SLACK_SHARE) + self.worst() * LATENESS_FACTOR + SAMPLE
    }
}

impl Drop for Lateness {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The share of T that a timing window allows beyond its bound, whatever the machine.
pub const SLACK_SHARE: f64 = 0.1;
/// How many times the measured scheduling delay a timing window allows beyond its bound.
pub const LATENESS_FACTOR: u32 = 4;
