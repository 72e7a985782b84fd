//! Concurrency: hundreds of connections at once (R2).

use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use crate::case::{Case, Level};
use crate::cases::echo::open_chain;
use crate::harness::{Ctx, PROMPT};
use crate::net::{expect_stream, StreamCheck};
use crate::outcome::{Failure, Stop};
use crate::rules::Rule;

pub static MANY: Case = Case {
    id: "concurrency/many",
    name: "Hundreds of connections",
    requirement: "Many client connections open at the same time MUST each be served, each with its own connection to the destination.",
    rules: &[Rule::R2],
    level: Level::Must,
    alone: false,
    assumes: "Each of the 200 connections is forwarded and echoed within PROMPT (5 s); fits the default limit of 1024 descriptors.",
    body: |cx| Box::pin(many(cx)),
};

/// Bytes each connection echoes.
const MESSAGE: usize = 2048;

async fn many(mut cx: Ctx) -> Result<(), Stop> {
    let n = cx.scale.connections;
    let messages: Vec<Arc<[u8]>> = (0..n).map(|_| cx.payload(MESSAGE).into()).collect();
    let clients = open_chain(&cx, n, |i| StreamCheck::new(messages[i].clone())).await?;
    // Every connection sends its own data at once, then checks its echo, and what its server
    // received.
    let mut tasks = Vec::with_capacity(n);
    for (i, ((client, at_server), message)) in clients.into_iter().zip(messages).enumerate() {
        tasks.push(tokio::spawn(async move {
            let (mut rx, mut tx) = client.into_split();
            tx.write_all(&message)
                .await
                .map_err(|e| (i, e.to_string()))?;
            expect_stream(&mut rx, &message, PROMPT)
                .await
                .map_err(|m| (i, m.to_string()))?;
            if let Some(m) = at_server.mismatch() {
                return Err((i, format!("what its server received differs: {m}")));
            }
            Ok::<_, (usize, String)>((rx, tx))
        }));
    }
    let mut failures = Vec::new();
    let mut open = Vec::with_capacity(n);
    for task in tasks {
        match task.await {
            Ok(Ok(halves)) => open.push(halves),
            Ok(Err(failure)) => failures.push(failure),
            Err(e) => failures.push((usize::MAX, e.to_string())),
        }
    }
    if let Some((i, first)) = failures.first() {
        return Err(Failure::new(
            format!("all {n} connections, open at once, echo their own {MESSAGE} bytes"),
            format!("{} of them failed; connection {}: {first}", failures.len(), i + 1),
        )
        .hint("the proxy alters data (it writes more bytes than it read, or mixes the connections' data), or serves a limited number of connections at a time")
        .into());
    }
    cx.trace
        .event(format_args!("{n} connections echoed their data"));
    Ok(())
}
