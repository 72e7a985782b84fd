//! Bulk: a large stream through a chain of connections, alone and next to a blocked connection
//! (R1–R4).

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::case::{Case, Failure, Level, Stop};
use crate::cases::echo::open_chain;
use crate::harness::{Ctx, PROMPT};
use crate::net::{expect_stream, flood, mib, wait_end, FloodEnd, Progress};
use crate::rules::Rule;

/// Bytes a client may push at a destination that reads nothing before tprox concludes that the
/// proxy buffers without bound. Kernel socket buffers on loopback can legitimately absorb tens
/// of MiB (Linux autotunes receive buffers up to `tcp_rmem`'s maximum, 32 MiB by default), so
/// the bound is well above that.
pub(crate) const UNBOUNDED_CAP: u64 = 128 * 1024 * 1024;

/// How long writes must make no progress before a connection counts as blocked.
pub(crate) const BLOCKED_QUIET: Duration = Duration::from_millis(300);

pub static CHAIN_20: Case = Case {
    id: "bulk/chain-20",
    name: "Bulk data, 20 connections",
    requirement: "A large stream MUST arrive unchanged through many connections at once.",
    rules: &[Rule::R1, Rule::R2],
    level: Level::Must,
    body: |cx| Box::pin(chain_20(cx)),
};

pub static BLOCKED_MIX: Case = Case {
    id: "bulk/blocked-mix",
    name: "Mix of blocked and normal",
    requirement: "When one peer stops reading, the proxy MUST stop reading from its sender instead of buffering without limit, and every other connection MUST keep its full service.",
    rules: &[Rule::R3, Rule::R4],
    level: Level::Must,
    body: |cx| Box::pin(blocked_mix(cx)),
};

async fn chain_20(mut cx: Ctx) -> Result<(), Stop> {
    bulk_through_chain(&mut cx).await?;
    Ok(())
}

/// Streams `scale.bulk_bytes` random bytes through a chain of echo connections and checks that
/// the far end receives exactly them.
async fn bulk_through_chain(cx: &mut Ctx) -> Result<Duration, Failure> {
    let n = cx.scale.chain_length;
    let payload = cx.payload(cx.scale.bulk_bytes);
    let clients = open_chain(cx, n).await?;
    let started = Instant::now();
    let (mut readers, mut writers): (Vec<_>, Vec<_>) =
        clients.into_iter().map(|c| c.into_split()).unzip();
    let mut first = writers.remove(0);
    let source = payload.clone();
    let mut tasks = vec![tokio::spawn(async move {
        let _ = first.write_all(&source).await;
        first
    })];
    // Connection i's echo is copied into connection i+1, as a client relaying it would.
    let mut last = readers.pop().expect("a chain has at least one connection");
    for (mut rx, mut tx) in readers.into_iter().zip(writers) {
        tasks.push(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut rx, &mut tx).await;
            tx
        }));
    }
    let result = expect_stream(&mut last, &payload, PROMPT).await;
    for task in tasks {
        task.abort();
    }
    match result {
        Ok(()) => {
            let took = started.elapsed();
            cx.trace.event(format_args!(
                "{} through {n} connection(s) intact in {:.2} s",
                mib(payload.len() as u64),
                took.as_secs_f64()
            ));
            Ok(took)
        }
        Err(mismatch) => Err(Failure::new(
            format!(
                "the {} sent into the chain of {n} connection(s) arrive at the far end unchanged",
                mib(payload.len() as u64)
            ),
            mismatch.to_string(),
        )
        .hint(
            "the proxy loses or alters data under load: usual causes are ignoring short writes \
             (write() may take fewer bytes than offered) or writing a buffer that was not filled",
        )),
    }
}

async fn blocked_mix(mut cx: Ctx) -> Result<(), Stop> {
    // The blocked connection: its destination never reads, its client writes as fast as it can.
    let (blocked, _never_read) = cx.open_pair().await?;
    let (mut blocked_rx, blocked_tx) = blocked.into_split();
    let progress = Progress::new();
    let flooding = flood(blocked_tx, UNBOUNDED_CAP, progress.clone());
    if !progress
        .wait_blocked(BLOCKED_QUIET, Duration::from_secs(20))
        .await
        || flooding.is_finished()
    {
        let observed = match flooding.await {
            Ok(FloodEnd::Capped) => format!(
                "the client wrote {} and the proxy kept accepting",
                mib(progress.bytes())
            ),
            Ok(FloodEnd::Failed(e, _)) => format!(
                "the proxy closed the connection after {} ({e})",
                mib(progress.bytes())
            ),
            Err(_) => "the flooding client stopped".into(),
        };
        return Err(Failure::new(
            "the proxy stops reading from a client whose destination does not read (backpressure)",
            observed,
        )
        .hint("the proxy reads into a queue that grows without bound instead of waiting until the destination can take more")
        .into());
    }
    let blocked_at = Instant::now();
    cx.trace.event(format_args!(
        "blocked connection stalled after {} accepted",
        mib(progress.bytes())
    ));
    // Watch for the proxy giving up on the blocked connection (its stall timeout).
    let aborted =
        tokio::spawn(async move { wait_end(&mut blocked_rx, Duration::from_secs(3600)).await });

    let result = bulk_through_chain(&mut cx).await;
    let blocked_gone = aborted.is_finished();
    aborted.abort();
    flooding.abort();
    match result {
        Err(failure) => Err(Failure::new(
            format!("while one connection is blocked, {}", failure.expected),
            failure.observed,
        )
        .hint("one blocked peer froze the other connections: the proxy blocks in a write (or holds a shared lock while writing) instead of serving the others")
        .into()),
        Ok(_) if blocked_gone => Err(Failure::new(
            "the bulk transfer completes while the other connection is still blocked",
            format!(
                "the bulk transfer finished only after the proxy closed the blocked connection ({:.1} s after it blocked)",
                blocked_at.elapsed().as_secs_f64()
            ),
        )
        .hint("one blocked peer froze the other connections until the stall timeout freed it: the proxy blocks in a write (or holds a shared lock while writing) instead of serving the others")
        .into()),
        Ok(_) => Ok(()),
    }
}
