//! Echo: small messages through one connection and through chains of connections (R1, R2).

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::case::{Case, Failure, Level, Stop};
use crate::harness::{Ctx, PROMPT};
use crate::net::{read_exact_within, show, spawn_echo};
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
    body: |cx| Box::pin(chain(cx, 1)),
};

pub static CHAIN_2: Case = Case {
    id: "echo/chain-2",
    name: "Two echo connections",
    requirement: "Two connections open at once MUST each be served, each with its own connection to the destination.",
    rules: &[Rule::R1, Rule::R2],
    level: Level::Must,
    alone: false,
    body: |cx| Box::pin(chain(cx, 2)),
};

pub static CHAIN_20: Case = Case {
    id: "echo/chain-20",
    name: "20 echo connections",
    requirement: "Twenty connections open at once MUST each be served, each with its own connection to the destination.",
    rules: &[Rule::R1, Rule::R2],
    level: Level::Must,
    alone: false,
    body: |cx| {
        let n = cx.scale.chain_length;
        Box::pin(chain(cx, n))
    },
};

/// Opens `n` client connections, each paired with an echoing destination connection.
/// The connections are all open before any data flows, so a proxy that serves one connection
/// at a time fails here rather than somewhere obscure.
pub(crate) async fn open_chain(cx: &Ctx, n: usize) -> Result<Vec<TcpStream>, Failure> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let client = cx.connect().await?;
        let server = cx.accept().await.map_err(|failure| {
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
        spawn_echo(server);
        clients.push(client);
    }
    cx.trace
        .event(format_args!("chain of {n} connection(s) open"));
    Ok(clients)
}

/// Sends `MESSAGES` small messages through a chain of `n` echo connections: what comes back from
/// connection i is written to connection i+1.
async fn chain(mut cx: Ctx, n: usize) -> Result<(), Stop> {
    let mut clients = open_chain(&cx, n).await?;
    for m in 0..MESSAGES {
        let sent = cx.text(MESSAGE_LEN);
        let mut message = sent.clone();
        for (i, client) in clients.iter_mut().enumerate() {
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
        }
        if message != sent {
            return Err(Failure::new(
                format!("message {} arrives as sent: {}", m + 1, show(&sent)),
                format!("received {}", show(&message)),
            )
            .hint("the proxy alters data: a common cause is writing the whole buffer instead of the bytes the read returned")
            .into());
        }
    }
    cx.trace.event(format_args!(
        "{MESSAGES} messages went through {n} connection(s) intact"
    ));
    Ok(())
}
