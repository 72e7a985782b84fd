//! Shutdown: one direction ends while the other goes on (R5).

use tokio::io::AsyncWriteExt;

use crate::case::{Case, Failure, Level, Stop};
use crate::harness::{Ctx, PROMPT};
use crate::net::{read_exact_within, show, wait_end, End, Ended};
use crate::rules::Rule;

pub static ONE_WAY: Case = Case {
    id: "shutdown/one-way",
    name: "One-way shutdown",
    requirement: "When the client shuts down its sending direction, the proxy MUST pass the EOF on to the server and keep forwarding the server's data to the client.",
    rules: &[Rule::R5],
    level: Level::Must,
    body: |cx| Box::pin(one_way(cx)),
};

async fn one_way(cx: Ctx) -> Result<(), Stop> {
    let (mut client, mut server) = cx.open_pair().await?;
    client.shutdown().await.map_err(|e| {
        Failure::new(
            "the client can shut down its sending direction",
            format!("shutdown failed: {e}"),
        )
    })?;
    cx.trace.event("client shut down its sending direction");

    match wait_end(&mut server, PROMPT).await {
        Some(ended) if matches!(ended.end, End::Eof) && ended.bytes == 0 => {}
        Some(ended) => {
            return Err(Failure::new(
                "the server reads EOF, and no data, after the client's shutdown",
                format!("the server read {} byte(s), then {}", ended.bytes, ended.end),
            )
            .hint("the proxy aborted the connection instead of passing the shutdown on")
            .into())
        }
        None => {
            return Err(Failure::new(
                format!("the server reads EOF within {} s of the client's shutdown", PROMPT.as_secs()),
                "the server saw nothing: the proxy kept its connection to the server open for writing",
            )
            .hint("the proxy does not pass EOF on: on reading EOF from one socket it must call shutdown(SHUT_WR) on the other")
            .into())
        }
    }
    cx.trace
        .event("server read EOF; server writes one byte and closes");
    let reply = b"!";
    if let Err(e) = server.write_all(reply).await {
        return Err(Failure::new(
            "the server can still write after the client's shutdown",
            format!("the server's write failed: {e}"),
        )
        .hint("the proxy closed both directions on the first EOF instead of shutting down one")
        .into());
    }
    drop(server);

    let got =
        read_exact_within(&mut client, reply.len(), PROMPT)
            .await
            .map_err(|short| {
                Failure::new(
            format!("the client receives the server's byte {} after its own shutdown", show(reply)),
            format!("the client received {short}"),
        )
        .hint("the proxy closed both directions on the first EOF instead of shutting down one")
            })?;
    if got != reply {
        return Err(Failure::new(
            format!("the client receives {}", show(reply)),
            format!("it received {}", show(&got)),
        )
        .into());
    }
    match wait_end(&mut client, PROMPT).await {
        Some(Ended {
            end: End::Eof,
            bytes: 0,
            ..
        }) => Ok(()),
        Some(ended) => Err(Failure::new(
            "after the byte, the client reads EOF",
            format!("it read {} more byte(s), then {}", ended.bytes, ended.end),
        )
        .into()),
        None => Err(Failure::new(
            format!(
                "after the byte, the client reads EOF within {} s (the server closed)",
                PROMPT.as_secs()
            ),
            "the connection stayed open",
        )
        .hint("the proxy does not pass the server's EOF on to the client")
        .into()),
    }
}
