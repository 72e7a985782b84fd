//! Close: the proxy ends a pair when one side goes away (R6, R8).

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::case::{Case, Level};
use crate::harness::{Ctx, PROMPT};
use crate::net::{read_exact_within, wait_end};
use crate::outcome::{Failure, Stop};
use crate::rules::Rule;

pub static EARLY: Case = Case {
    id: "close/early",
    name: "Early close",
    requirement: "When the server closes its connection, the proxy MUST close the client's connection promptly (EOF or reset), even while the client keeps writing.",
    rules: &[Rule::R6, Rule::R8],
    level: Level::Must,
    alone: false,
    assumes: "The client's connection is closed within PROMPT + 1 s of the server closing.",
    body: |cx| Box::pin(early(cx)),
};

/// Writes the client makes, one second apart, while waiting for the close.
const WRITES: usize = 5;

async fn early(cx: Ctx) -> Result<(), Stop> {
    let (client, server) = cx.open_pair().await?;
    drop(server);
    let closed_at = Instant::now();
    cx.trace.event("server closed right after accept");
    let (mut rx, mut tx) = client.into_split();
    let watch =
        tokio::spawn(async move { wait_end(&mut rx, PROMPT + Duration::from_secs(1)).await });
    // The client goes on writing after it sees the close, as a careless client would: the
    // proxy must survive writing into the dead connection (R11; the runner checks afterwards).
    for i in 0..WRITES {
        match tx.write_all(b"x").await {
            Ok(()) => cx.trace.event(format_args!("client wrote byte {}", i + 1)),
            Err(e) => {
                // A failed write means the proxy reset the connection: it is closed.
                cx.trace.event(format_args!("client write failed: {e}"));
                watch.abort();
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    match watch.await {
        Ok(Some(ended)) => {
            cx.trace.event(format_args!(
                "client saw {} {:.2} s after the server closed",
                ended.end,
                (ended.at - closed_at).as_secs_f64()
            ));
            Ok(())
        }
        _ => Err(Failure::new(
            format!("the client's connection is closed within {} s of the server closing", PROMPT.as_secs() + 1),
            format!("it stayed open while the client wrote {WRITES} bytes, one second apart"),
        )
        .hint("the proxy ignores EOF from the destination (and errors writing to it): it must shut the client's side down, or close the pair when a write fails")
        .into()),
    }
}

pub static RESET_SERVER: Case = Case {
    id: "close/reset-server",
    name: "Server resets mid-stream",
    requirement: "When the server aborts with a reset while sending, the proxy MUST treat it as the server closing and close the client's connection promptly.",
    rules: &[Rule::R6, Rule::R11],
    level: Level::Must,
    alone: false,
    assumes: "The server sends 256 KiB, the client receives them all within PROMPT (5 s), then the server resets; the client's side is closed within PROMPT of the reset.",
    body: |cx| Box::pin(reset_mid_stream(cx, Resetter::Server)),
};

pub static RESET_CLIENT: Case = Case {
    id: "close/reset-client",
    name: "Client resets mid-stream",
    requirement: "When the client aborts with a reset while sending, the proxy MUST treat it as the client closing and close the server's connection promptly.",
    rules: &[Rule::R6, Rule::R11],
    level: Level::Must,
    alone: false,
    assumes: "The client sends 256 KiB, the server receives them all within PROMPT (5 s), then the client resets; the server's side is closed within PROMPT of the reset.",
    body: |cx| Box::pin(reset_mid_stream(cx, Resetter::Client)),
};

pub static WRITE_AFTER_CLOSE: Case = Case {
    id: "close/write-after-close",
    name: "Writes towards a closed server",
    requirement: "When the proxy writes to a peer that has closed (EPIPE, SIGPIPE), it MUST NOT crash, and MUST go on serving new connections.",
    rules: &[Rule::R11, Rule::R6],
    level: Level::Must,
    alone: false,
    assumes: "The proxy's close and the later echo within PROMPT (5 s).",
    body: |cx| Box::pin(write_after_close(cx)),
};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Resetter {
    Client,
    Server,
}

/// Closes `stream` with a reset (RST) instead of an orderly FIN.
pub(crate) fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Bytes the resetting peer sends before its reset.
const BEFORE_RESET: usize = 256 * 1024;

async fn reset_mid_stream(mut cx: Ctx, resetter: Resetter) -> Result<(), Stop> {
    let (client, server) = cx.open_pair().await?;
    let (mut sender, mut receiver) = match resetter {
        Resetter::Server => (server, client),
        Resetter::Client => (client, server),
    };
    let (from, to) = match resetter {
        Resetter::Server => ("server", "client"),
        Resetter::Client => ("client", "server"),
    };
    // The receiver only reads: the proxy learns of the reset by reading it, not by a failed
    // write towards the resetting peer. The reset comes once every byte before it has arrived,
    // so that the proxy's read has nothing else to return: a reset that overtakes data the
    // proxy has not read yet makes Linux drop that data, and whether the proxy's next read
    // then sees the reset or an EOF depends on its speed.
    let data = cx.text(BEFORE_RESET);
    sender.write_all(&data).await.ok();
    let _ = read_exact_within(&mut receiver, data.len(), PROMPT)
        .await
        .map_err(|short| {
            Failure::new(
                format!("the {to} receives all {} KiB the {from} sent before its reset", BEFORE_RESET / 1024),
                format!("received {short}"),
            )
            .hint("the proxy loses bytes, or does not forward this direction while the other is silent")
        })?;
    reset(sender);
    let reset_at = Instant::now();
    cx.trace
        .event(format_args!("{from} reset its connection mid-stream"));
    match wait_end(&mut receiver, PROMPT).await {
        Some(ended) => {
            cx.trace.event(format_args!(
                "{to} saw {} {:.2} s after the reset",
                ended.end,
                (ended.at - reset_at).as_secs_f64()
            ));
            Ok(())
        }
        None => Err(Failure::new(
            format!("the {to}'s connection is closed within {} s of the {from}'s reset", PROMPT.as_secs()),
            "it stayed open",
        )
        .hint("the proxy ignores ECONNRESET: a read error must end the pair like EOF (R6 treats a reset as the peer closing)")
        .into()),
    }
}

async fn write_after_close(mut cx: Ctx) -> Result<(), Stop> {
    let (client, server) = cx.open_pair().await?;
    drop(server);
    cx.trace.event("server closed; the client keeps writing");
    let (_rx, mut tx) = client.into_split();
    let chunk = cx.payload(64 * 1024);
    let mut written = 0;
    for _ in 0..10 {
        if let Err(e) = tx.write_all(&chunk).await {
            cx.trace
                .event(format_args!("client write failed after {written} KiB: {e}"));
            break;
        }
        written += chunk.len() / 1024;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cx.trace.event(format_args!(
        "client wrote {written} KiB towards the closed server"
    ));
    // The proxy has had every chance to write into the closed connection: it must still serve.
    let (mut client, server) = cx.open_pair().await.map_err(|f| {
        Failure::new(format!("after writing towards a closed server, {}", f.expected), f.observed)
            .hint("the proxy died of SIGPIPE: ignore SIGPIPE (or send with MSG_NOSIGNAL) and treat EPIPE as a closed peer")
    })?;
    crate::net::spawn_echo(server);
    let message = cx.text(8);
    client.write_all(&message).await.ok();
    match read_exact_within(&mut client, message.len(), PROMPT).await {
        Ok(echo) if echo == message => Ok(()),
        _ => Err(Failure::new(
            "a new connection is served after the writes towards a closed server",
            "its echo did not come back",
        )
        .hint("the proxy died of SIGPIPE or stopped accepting")
        .into()),
    }
}
