//! Echo: small messages through one connection and through chains of connections (R1, R2).

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::case::{Case, Level};
use crate::harness::{Ctx, PROMPT};
use crate::net::{read_exact_within, show, spawn_checked_echo, StreamCheck};
use crate::outcome::{Failure, Stop};
use crate::rules::Rule;

/// Messages sent through every echo case, as in the original tester.
const MESSAGES: usize = 10;
const MESSAGE_LEN: usize = 4;

pub static SINGLE: Case = Case {
    id: "echo/single",
    name: "Single echo connection",
    requirement: "Bytes sent by the client MUST arrive at the server, and the server's bytes at the client, unchanged and in order.",
    rules: &[Rule::R1],
    level: Level::Must,
    alone: false,
    assumes: "Each echo comes back within PROMPT (5 s): any proxy that forwards at all is fast enough, on any machine.",
    body: |cx| Box::pin(chain(cx, 1)),
};

pub static CHAIN_2: Case = Case {
    id: "echo/chain-2",
    name: "Two echo connections",
    requirement: "Two connections open at once MUST each be served, each with its own connection to the destination.",
    rules: &[Rule::R1, Rule::R2],
    level: Level::Must,
    alone: false,
    assumes: "Each connection is forwarded, and each echo comes back, within PROMPT (5 s); nothing else about speed.",
    body: |cx| Box::pin(chain(cx, 2)),
};

pub static CHAIN_20: Case = Case {
    id: "echo/chain-20",
    name: "20 echo connections",
    requirement: "Twenty connections open at once MUST each be served, each with its own connection to the destination.",
    rules: &[Rule::R1, Rule::R2],
    level: Level::Must,
    alone: false,
    assumes: "Each connection is forwarded, and each echo comes back, within PROMPT (5 s); nothing else about speed.",
    body: |cx| {
        let n = cx.scale.chain_length;
        Box::pin(chain(cx, n))
    },
};

/// Opens `n` client connections, each paired with an echoing destination connection that
/// checks what it receives with `check(i)`, made for the stream connection `i` must carry.
/// The connections are all open before any data flows, so a proxy that serves one connection
/// at a time fails here rather than somewhere obscure.
pub(crate) async fn open_chain(
    cx: &Ctx,
    n: usize,
    check: impl Fn(usize) -> StreamCheck,
) -> Result<Vec<(TcpStream, StreamCheck)>, Failure> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let mut client = cx.connect().await?;
        let server = cx.accept_for(&mut client).await.map_err(|failure| {
            if i == 0 {
                failure
            } else {
                Failure::new(
                    format!("connection {} of {n} is forwarded while the first {i} stay open", i + 1),
                    format!("the proxy did not connect it to the destination within {} s", PROMPT.as_secs()),
                )
                .hint("the proxy handles one connection at a time (blocking accept loop, or a single-threaded loop that waits for a connection to end)")
            }
        })?;
        let check = check(i);
        spawn_checked_echo(server, check.clone());
        clients.push((client, check));
    }
    cx.trace
        .event(format_args!("chain of {n} connection(s) open"));
    Ok(clients)
}

/// The hint for data altered on its way through one connection.
pub(crate) const ALTERED_HINT: &str = "the proxy alters data: a common cause is writing the whole buffer instead of the bytes the read returned. Every connection is checked on its own, both ways, because a change made the same way on every connection (or on both directions of one) can cancel out by the end";

/// Sends `MESSAGES` small messages through a chain of `n` echo connections: what comes back from
/// connection i is written to connection i+1. Every hop is checked both ways: what its server
/// receives, and what its client reads back.
async fn chain(mut cx: Ctx, n: usize) -> Result<(), Stop> {
    let messages: Vec<Vec<u8>> = (0..MESSAGES).map(|_| cx.text(MESSAGE_LEN)).collect();
    let stream: Arc<[u8]> = messages.concat().into();
    let mut clients = open_chain(&cx, n, |_| StreamCheck::new(stream.clone())).await?;
    for (m, sent) in messages.iter().enumerate() {
        let mut message = sent.clone();
        for (i, (client, at_server)) in clients.iter_mut().enumerate() {
            let hop = if n == 1 {
                String::new()
            } else {
                format!(" on connection {} of {n}", i + 1)
            };
            client.write_all(&message).await.map_err(|e| {
                Failure::new(
                    format!("message {} can be written{hop}", m + 1),
                    format!("the write failed: {e}"),
                )
                .hint("the proxy closed the connection")
            })?;
            message = read_exact_within(client, MESSAGE_LEN, PROMPT)
                .await
                .map_err(|short| {
                    Failure::new(
                        format!(
                            "message {} of {MESSAGES} ({}) echoed back{hop} within {} s",
                            m + 1,
                            show(&message),
                            PROMPT.as_secs()
                        ),
                        format!("received {short}"),
                    )
                    .hint(if short.got.is_empty() {
                        "the proxy does not forward data in one of the directions"
                    } else {
                        "the proxy loses bytes"
                    })
                })?;
            // The echo has come back, so the server has received the message.
            if let Some(mismatch) = at_server.mismatch() {
                return Err(Failure::new(
                    format!("the server receives every message as sent{hop}"),
                    format!("what the server received{hop} differs from what the client sent: {mismatch}"),
                )
                .hint(ALTERED_HINT)
                .into());
            }
            if message != *sent {
                return Err(Failure::new(
                    format!("message {} comes back as sent{hop}: {}", m + 1, show(sent)),
                    format!("received {}", show(&message)),
                )
                .hint(ALTERED_HINT)
                .into());
            }
        }
    }
    cx.trace.event(format_args!(
        "{MESSAGES} messages went through {n} connection(s) intact, checked at every hop"
    ));
    Ok(())
}
