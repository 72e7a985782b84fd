//! Clients that stop before their stream begins (mid-way through a front's handshake, or a
//! PROXY protocol header) and stay silent: the proxy must serve everyone else meanwhile (R3),
//! and close each once it has been silent for about the stall timeout (R7).
//!
//! Shared by `front/mid-handshake` and `proxy-protocol/header-timeout`, which differ only in
//! what their clients leave unfinished.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::harness::{Trace, PROMPT};
use crate::outcome::{Failure, Stop};

/// The part of T the silent clients are given before the normal client comes: well under
/// [`crate::cases::timeout::EARLIEST`], so that no correct proxy drops a silent client first.
pub const SETTLE: f64 = 0.1;

/// How the failures of one case name its silent clients and their usual cause.
pub struct Subject {
    /// Where the clients stopped, as a phrase: "mid-handshake", "mid-header".
    pub stopped: &'static str,
    /// The hint for a proxy that serves the normal client only once it drops silent ones.
    pub pool_hint: &'static str,
    /// The hint for a proxy that never drops a silent client.
    pub no_timeout_hint: &'static str,
}

/// Silent clients: what each stopped after, when, and the task that holds it and says when it
/// ended. Dropping it closes every client still open, so that a case that fails early does not
/// leave a proxy's pool held for the cases after it.
#[derive(Default)]
pub struct Silent(Vec<(&'static str, Instant, JoinHandle<Instant>)>);

impl Silent {
    /// Watches `client`, silent from now on after `what`, for its end.
    pub fn hold(&mut self, what: &'static str, mut client: TcpStream) {
        let stopped = Instant::now();
        let end = tokio::spawn(async move {
            let mut buf = [0u8; 256];
            loop {
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => return Instant::now(),
                    // An answer or an error answer before the close is fine.
                    Ok(_) => {}
                }
            }
        });
        self.0.push((what, stopped, end));
    }

    /// Waits a tenth of the stall timeout `stall`, has `serve` (not started before) show that a normal client is served, and then judges
    /// every silent client's end: none before the normal client was served (a proxy whose pool
    /// the silent clients hold serves it only once it drops some), each after at least 0.5 T
    /// and within 1.5 T + PROMPT of its last byte.
    pub async fn judge(
        mut self,
        stall: Duration,
        trace: &Trace,
        subject: &Subject,
        serve: impl std::future::Future<Output = Result<(), Stop>>,
    ) -> Result<(), Stop> {
        // The proxy reads what each silent client sent in its own time. A pool that the
        // silent clients would hold must be held before the normal client comes, or the
        // verdict would hang on the order in which the proxy's threads happened to run; a
        // tenth of T lets them read. A correct proxy serves the normal client whatever the wait.
        tokio::time::sleep(stall.mul_f64(SETTLE)).await;
        serve.await?;
        let served = Instant::now();
        let stopped_at = subject.stopped;
        let earliest = stall.mul_f64(crate::cases::timeout::EARLIEST);
        let latest = stall.mul_f64(crate::cases::timeout::LATEST) + PROMPT;
        let mut worst = Duration::ZERO;
        for (what, stopped, end) in self.0.iter_mut() {
            let (what, stopped) = (*what, *stopped);
            if end.is_finished() {
                let at = end.await.unwrap_or(served);
                if at < served && at - stopped >= earliest {
                    return Err(Failure::new(
                        format!("a normal client is served while clients are stopped {stopped_at} (after {what}), not once they are dropped"),
                        format!("it was served {:.2} s after a silent client was dropped", (served - at).as_secs_f64()),
                    )
                    .hint(subject.pool_hint)
                    .into());
                }
                given_enough(stopped_at, what, at - stopped, earliest)?;
                worst = worst.max(at - stopped);
                continue;
            }
            let left = (stopped + latest).saturating_duration_since(Instant::now());
            let Ok(Ok(at)) = tokio::time::timeout(left, end).await else {
                return Err(Failure::new(
                    format!(
                        "a client silent {stopped_at} (after {what}) is closed within {:.1} s (1.5 T + PROMPT)",
                        latest.as_secs_f64()
                    ),
                    "it stayed open",
                )
                .hint(subject.no_timeout_hint)
                .into());
            };
            given_enough(stopped_at, what, at - stopped, earliest)?;
            worst = worst.max(at - stopped);
        }
        trace.event(format_args!(
            "every silent client was closed, the last {:.2} s after it stopped",
            worst.as_secs_f64()
        ));
        Ok(())
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        for (_, _, end) in &self.0 {
            end.abort();
        }
    }
}

/// A silent client must be given at least `earliest` (0.5 T) before it is closed.
fn given_enough(
    stopped_at: &str,
    what: &str,
    after: Duration,
    earliest: Duration,
) -> Result<(), Stop> {
    if after < earliest {
        return Err(Failure::new(
            format!(
                "a client {stopped_at} (after {what}) is given at least {:.1} s (0.5 T)",
                earliest.as_secs_f64()
            ),
            format!("it was closed after {:.2} s", after.as_secs_f64()),
        )
        .into());
    }
    Ok(())
}
