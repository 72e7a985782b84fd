//! The front case about clients that stop anywhere in their handshake.

use tokio::io::AsyncWriteExt;

use super::{echo_works, front};
use crate::case::{Case, Level};
use crate::cases::silent::{Silent, Subject};
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

async fn mid_handshake(mut cx: Ctx) -> Result<(), Stop> {
    let front = front(&cx)?;
    let stages = stages(&front, cx.dest.port());
    // Every client watches for its end from the moment it stops, so that the order of the
    // ends and the echo can be judged.
    let mut stuck = Silent::default();
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
                        .hint(POOL_HINT)
                        .into());
                    }
                    Some(())
                }
            };
        }
        stuck.hold(stage.what, client);
    }
    let names: Vec<&str> = stages.iter().map(|s| s.what).collect();
    cx.trace.event(format_args!(
        "{STUCK} clients stopped mid-handshake, after: {}",
        names.join("; ")
    ));
    let subject = Subject {
        stopped: "mid-handshake",
        pool_hint: POOL_HINT,
        no_timeout_hint:
            "the front has no timeout for the handshake: idle clients hold descriptors forever",
    };
    let (stall, trace) = (cx.stall, cx.trace.clone());
    let after = format!("{STUCK} clients stopped mid-handshake");
    stuck
        .judge(stall, &trace, &subject, echo_works(&mut cx, &after))
        .await
}

const POOL_HINT: &str = "the front does its handshakes in a fixed number of workers, which clients silent mid-handshake hold: each waits for its client until the timeout";
