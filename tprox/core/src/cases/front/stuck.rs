//! The front case about clients that stop anywhere in their handshake.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{echo_works, front};
use crate::case::{Case, Level};
use crate::front::Front;
use crate::harness::{Ctx, PROMPT};
use crate::net::read_exact_within;
use crate::outcome::{Failure, Stop};
use crate::rules::Rule;

pub static MID_HANDSHAKE: Case = Case {
    id: "front/mid-handshake",
    name: "Clients stuck mid-handshake",
    requirement: "Clients that stop anywhere in their handshake (half a greeting, after a complete greeting, after the method choice, mid-credentials, mid-request; half a request line, mid-headers) MUST NOT delay any other client (R3), and each MUST be closed once it has been silent for about the stall timeout.",
    rules: &[Rule::R13, Rule::R3, Rule::R7],
    level: Level::Must,
    alone: false,
    assumes: "20 clients are stuck, spread over the stages; a normal echo works within PROMPT (5 s) and before any stuck client is dropped; each stuck client is closed between 0.5 T and 1.5 T + PROMPT after its last byte (T: the stall timeout).",
    body: |cx| Box::pin(mid_handshake(cx)),
};

/// Clients left mid-handshake by [`mid_handshake`].
const STUCK: usize = 20;

/// Where a client of [`mid_handshake`] stops: what it is, for failures, and what it sends.
/// Each step is written once the answers before it have been read, as a polite client does;
/// the client then stays silent without reading what comes.
struct Stage {
    what: &'static str,
    steps: Vec<Step>,
}

enum Step {
    /// Bytes to write.
    Send(Vec<u8>),
    /// An answer of this many bytes to read before going on.
    Read(usize),
}

/// The stages at which `front`'s clients stop: every message of its handshake, left half
/// written or left unanswered by the client.
fn stages(front: &Front, port: u16) -> Vec<Stage> {
    use Step::{Read, Send};
    if !front.is_socks5() {
        return vec![
            Stage {
                what: "half a request line",
                steps: vec![Send(b"CONNECT 127.0.0.1:".to_vec())],
            },
            Stage {
                what: "a request line and half its headers",
                steps: vec![Send(
                    format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0").into_bytes(),
                )],
            },
        ];
    }
    let credentials = front.credentials();
    let method = if credentials.is_some() { 2 } else { 0 };
    let mut login = vec![Send(vec![5, 1, method]), Read(2)];
    let mut stages = vec![
        Stage {
            what: "half a greeting",
            steps: vec![Send(vec![5, 1])],
        },
        Stage {
            what: "a complete greeting",
            steps: vec![Send(vec![5, 1, method])],
        },
    ];
    if let Some((user, pass)) = credentials {
        let mut auth = vec![1, user.len() as u8];
        auth.extend_from_slice(user.as_bytes());
        auth.push(pass.len() as u8);
        auth.extend_from_slice(pass.as_bytes());
        let mut half = login.iter().map(Step::copy).collect::<Vec<_>>();
        half.push(Send(auth[..auth.len() / 2 + 1].to_vec()));
        stages.push(Stage {
            what: "the method choice and half its credentials",
            steps: half,
        });
        login.push(Send(auth));
        login.push(Read(2));
    }
    login.push(Send(vec![5, 1, 0, 1, 127, 0]));
    stages.push(Stage {
        what: "the method choice and half a request",
        steps: login,
    });
    stages
}

impl Step {
    fn copy(&self) -> Step {
        match self {
            Step::Send(bytes) => Step::Send(bytes.clone()),
            Step::Read(n) => Step::Read(*n),
        }
    }
}

/// The part of T the stuck clients are given before the normal client comes: well under
/// [`crate::cases::timeout::EARLIEST`], so that no correct front drops a stuck client first.
const SETTLE: f64 = 0.1;

async fn mid_handshake(mut cx: Ctx) -> Result<(), Stop> {
    let front = front(&cx)?;
    let stages = stages(&front, cx.dest.port());
    // Every client watches for its end from the moment it stops, so that the order of the
    // ends and the echo can be judged.
    let mut stuck = Stuck(Vec::new());
    for i in 0..STUCK {
        let stage = &stages[i % stages.len()];
        let mut client = cx.connect_only().await?;
        for step in &stage.steps {
            match step {
                Step::Send(bytes) => client.write_all(bytes).await.ok(),
                Step::Read(n) => {
                    if read_exact_within(&mut client, *n, PROMPT).await.is_err() {
                        return Err(Failure::new(
                            format!("while {i} other clients are stuck mid-handshake, the front answers each message before {}", stage.what),
                            format!("no answer within {} s", PROMPT.as_secs()),
                        )
                        .hint("the front does its handshakes in a fixed number of workers, which clients silent mid-handshake hold: each waits for its client until the timeout")
                        .into());
                    }
                    Some(())
                }
            };
        }
        let stopped = tokio::time::Instant::now();
        let end = tokio::spawn(async move {
            let mut buf = [0u8; 256];
            loop {
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => return tokio::time::Instant::now(),
                    // An answer or an error answer before the close is fine.
                    Ok(_) => {}
                }
            }
        });
        stuck.0.push((stage.what, stopped, end));
    }
    let names: Vec<&str> = stages.iter().map(|s| s.what).collect();
    cx.trace.event(format_args!(
        "{STUCK} clients stopped mid-handshake, after: {}",
        names.join("; ")
    ));
    // The front reads what each stuck client sent in its own time. A pool that the stuck
    // clients would hold must be held before the normal client comes, or the verdict would
    // hang on the order in which the front's threads happened to run; a tenth of T lets them
    // read. A correct front serves the normal client whatever the wait.
    tokio::time::sleep(cx.stall.mul_f64(SETTLE)).await;
    echo_works(&mut cx, &format!("{STUCK} clients stopped mid-handshake")).await?;
    let served = tokio::time::Instant::now();
    // Each must be dropped once silent for about the stall timeout, and none before the
    // normal client was served: a front whose pool the stuck clients hold serves it only once
    // it drops some of them.
    let earliest = cx.stall.mul_f64(crate::cases::timeout::EARLIEST);
    let latest = cx.stall.mul_f64(crate::cases::timeout::LATEST) + PROMPT;
    let mut worst = Duration::ZERO;
    for (what, stopped, end) in stuck.0.iter_mut() {
        let (what, stopped) = (*what, *stopped);
        if end.is_finished() {
            let at = end.await.unwrap_or(served);
            if at < served && at - stopped >= earliest {
                return Err(Failure::new(
                    format!("a normal client is served while clients are stuck mid-handshake (after {what}), not once they are dropped"),
                    format!("it was served {:.2} s after a stuck client was dropped", (served - at).as_secs_f64()),
                )
                .hint("the front does its handshakes in a fixed number of workers, which clients silent mid-handshake hold: each waits for its client until the timeout")
                .into());
            }
            check_stuck_end(what, at - stopped, earliest)?;
            worst = worst.max(at - stopped);
            continue;
        }
        let left = (stopped + latest).saturating_duration_since(tokio::time::Instant::now());
        let Ok(Ok(at)) = tokio::time::timeout(left, end).await else {
            return Err(Failure::new(
                format!(
                    "a client silent mid-handshake (after {what}) is closed within {:.1} s (1.5 T + PROMPT)",
                    latest.as_secs_f64()
                ),
                "it stayed open",
            )
            .hint(
                "the front has no timeout for the handshake: idle clients hold descriptors forever",
            )
            .into());
        };
        check_stuck_end(what, at - stopped, earliest)?;
        worst = worst.max(at - stopped);
    }
    cx.trace.event(format_args!(
        "every stuck client was closed, the last {:.2} s after it stopped",
        worst.as_secs_f64()
    ));
    Ok(())
}

/// The stuck clients of [`mid_handshake`]: what each stopped after, when, and the task that
/// holds it and says when it ended. Dropping it closes every client still open, so that a case
/// that fails early does not leave a front's pool held for the cases after it.
struct Stuck(
    Vec<(
        &'static str,
        tokio::time::Instant,
        tokio::task::JoinHandle<tokio::time::Instant>,
    )>,
);

impl Drop for Stuck {
    fn drop(&mut self) {
        for (_, _, end) in &self.0 {
            end.abort();
        }
    }
}

/// A stuck client must be given at least `earliest` (0.5 T) before it is closed.
fn check_stuck_end(what: &str, after: Duration, earliest: Duration) -> Result<(), Stop> {
    if after < earliest {
        return Err(Failure::new(
            format!(
                "a client mid-handshake (after {what}) is given at least {:.1} s (0.5 T)",
                earliest.as_secs_f64()
            ),
            format!("it was closed after {:.2} s", after.as_secs_f64()),
        )
        .into());
    }
    Ok(())
}
