//! Close: the proxy ends a pair when one side goes away (R6, R8).

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::case::{Case, Failure, Level, Stop};
use crate::harness::{Ctx, PROMPT};
use crate::net::wait_end;
use crate::rules::Rule;

pub static EARLY: Case = Case {
    id: "close/early",
    name: "Early close",
    requirement: "When the server closes its connection, the proxy MUST close the client's connection promptly (EOF or reset), even while the client keeps writing.",
    rules: &[Rule::R6, Rule::R8],
    level: Level::Must,
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
    for i in 0..WRITES {
        if watch.is_finished() {
            break;
        }
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
