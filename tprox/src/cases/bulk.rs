//! Bulk: a large stream through a chain of connections, alone and next to a blocked connection
//! (R1–R4).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use tokio::net::TcpStream;

use crate::case::{Case, Failure, Level, Stop};
use crate::cases::echo::{open_chain, ALTERED_HINT};
use crate::clock::{Lateness, LATENESS_FACTOR};
use crate::harness::{Ctx, PROMPT};
use crate::net::{
    checked_copy, expect_stream, flood, mib, wait_end, Activity, FloodEnd, Progress, StreamCheck,
    Watched,
};
use crate::rules::Rule;

/// Bytes a client may push at a destination that reads nothing before tprox concludes that the
/// proxy buffers without bound. Kernel socket buffers on loopback can legitimately absorb tens
/// of MiB (Linux autotunes receive buffers up to `tcp_rmem`'s maximum, 32 MiB by default), so
/// the bound is well above that.
pub(crate) const UNBOUNDED_CAP: u64 = 128 * 1024 * 1024;

/// How long writes must make no progress before a connection counts as blocked.
pub(crate) const BLOCKED_QUIET: Duration = Duration::from_millis(300);

/// The blocked-mix cases judge freezing, not speed. A proxy frozen by the blocked write moves
/// nothing on the other connections from the moment the bulk starts until its stall timeout
/// frees the blocked one (about T later); a correct proxy, however slow or loaded, moves
/// something every few milliseconds. So the other connections fail if nothing at all moved on
/// them from the bulk's start until shortly before the proxy closed the blocked connection
/// ("shortly": four times the scheduling delay measured, plus 50 ms, for how late tprox may see
/// the close), where that span is at least [`FROZEN_SPAN_SHARE`] × T; or if, while the blocked
/// connection was open, they paused for [`FROZEN_SHARE`] × T (plus four times the measured
/// scheduling delay) at a stretch. Finishing the bulk before the proxy aborts the blocked
/// connection is not required: a slow proxy or a loaded machine need not be that fast.
pub const FROZEN_SHARE: f64 = 0.5;
/// The shortest span, as a share of T, over which moving nothing at all counts as frozen.
pub const FROZEN_SPAN_SHARE: f64 = 0.25;

pub static CHAIN_20: Case = Case {
    id: "bulk/chain-20",
    name: "Bulk data, 20 connections",
    requirement: "A large stream MUST arrive unchanged through many connections at once.",
    rules: &[Rule::R1, Rule::R2],
    level: Level::Must,
    alone: false,
    assumes: "No limit on the total time: only a pause of PROMPT (5 s) with no byte arriving at the far end fails. Any throughput passes.",
    body: |cx| Box::pin(chain_20(cx)),
};

pub static BLOCKED_MIX: Case = Case {
    id: "bulk/blocked-mix",
    name: "Mix of blocked and normal",
    requirement: "When one peer stops reading, the proxy MUST stop reading from its sender instead of buffering without limit, and every other connection MUST keep its full service.",
    rules: &[Rule::R3, Rule::R4],
    level: Level::Must,
    alone: false,
    assumes: "No limit on the bulk's total time, and the proxy may abort the blocked connection whenever its stall timeout says. A connection counts as blocked after 300 ms without write progress. Freezing is judged by progress: the other connections fail only if nothing at all moves on them from the bulk's start until the blocked connection is closed, or nothing for T/2 (plus four times the measured scheduling delay) at a stretch while it is open (a frozen proxy moves nothing for about T; a slow one moves something every few milliseconds).",
    body: |cx| Box::pin(blocked_mix(cx, Flooder::Client)),
};

pub static BLOCKED_DOWNLOAD: Case = Case {
    id: "bulk/blocked-download",
    name: "Mix of blocked download and normal",
    requirement: "When a client stops reading a large download, the proxy MUST stop reading from its server instead of buffering without limit, and every other connection MUST keep its full service.",
    rules: &[Rule::R3, Rule::R4],
    level: Level::Must,
    alone: false,
    assumes: "No limit on the bulk's total time, and the proxy may abort the blocked connection whenever its stall timeout says. A connection counts as blocked after 300 ms without write progress. Freezing is judged by progress: the other connections fail only if nothing at all moves on them from the bulk's start until the blocked connection is closed, or nothing for T/2 (plus four times the measured scheduling delay) at a stretch while it is open.",
    body: |cx| Box::pin(blocked_mix(cx, Flooder::Server)),
};

pub static DUPLEX: Case = Case {
    id: "bulk/duplex",
    name: "Bulk data both ways at once",
    requirement: "Data MUST flow in both directions of one connection at the same time, without deadlock, each direction arriving intact.",
    rules: &[Rule::R1, Rule::R3],
    level: Level::Must,
    alone: false,
    assumes: "No limit on the total time; a pause of PROMPT (5 s) in either direction fails.",
    body: |cx| Box::pin(duplex(cx)),
};

/// Bytes each way in bulk/duplex. Unequal on purpose: a proxy that alternates between the
/// directions in lock-step gets stuck once the shorter one is done. Not multiples of any
/// buffer size, so that short reads are certain.
const DUPLEX_UP: usize = 3 * 1024 * 1024 + 777;
const DUPLEX_DOWN: usize = 5 * 1024 * 1024 + 333;

/// Which peer of the blocked connection writes without end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flooder {
    Client,
    Server,
}

async fn chain_20(mut cx: Ctx) -> Result<(), Stop> {
    let payload: Arc<[u8]> = cx.payload(cx.scale.bulk_bytes).into();
    let activity = Activity::new();
    let hops = open_bulk_chain(&cx, &payload, &activity).await?;
    stream_through_chain(&cx, hops, &payload, &activity).await?;
    Ok(())
}

/// Opens the chain for bulk data: `scale.chain_length` echo connections, each checking what
/// its server receives against `payload` and telling `activity` when bytes arrive.
async fn open_bulk_chain(
    cx: &Ctx,
    payload: &Arc<[u8]>,
    activity: &Activity,
) -> Result<Vec<(TcpStream, StreamCheck)>, Failure> {
    open_chain(cx, cx.scale.chain_length, |_| {
        StreamCheck::new(payload.clone()).watched(activity)
    })
    .await
}

/// Streams `payload` through a chain of echo connections and checks that every hop carries
/// exactly it: what each server receives, what each client reads back, and what arrives at the
/// far end. Tells `activity` whenever data arrives back at a client (its servers tell it what
/// they receive), from the moment the stream starts.
async fn stream_through_chain(
    cx: &Ctx,
    hops: Vec<(TcpStream, StreamCheck)>,
    payload: &Arc<[u8]>,
    activity: &Activity,
) -> Result<Duration, Failure> {
    let n = hops.len();
    activity.restart();
    let started = Instant::now();
    let mut at_servers = Vec::with_capacity(n);
    let mut readers = Vec::with_capacity(n);
    let mut writers = Vec::with_capacity(n);
    for (client, at_server) in hops {
        let (rx, tx) = client.into_split();
        readers.push(Watched::new(rx, activity.clone()));
        writers.push(tx);
        at_servers.push(at_server);
    }
    let mut first = writers.remove(0);
    let stream = payload.clone();
    let source = payload.clone();
    let payload = &payload[..];
    let mut tasks = vec![tokio::spawn(async move {
        let _ = first.write_all(&source).await;
        first
    })];
    // Connection i's echo is copied into connection i+1, as a client relaying it would, and
    // checked on the way.
    let mut last = readers.pop().expect("a chain has at least one connection");
    let mut at_clients = Vec::with_capacity(n);
    for (mut rx, mut tx) in readers.into_iter().zip(writers) {
        let check = StreamCheck::new(stream.clone());
        at_clients.push(check.clone());
        tasks.push(tokio::spawn(async move {
            let _ = checked_copy(&mut rx, &mut tx, &check).await;
            tx
        }));
    }
    let result = expect_stream(&mut last, payload, PROMPT).await;
    for task in tasks {
        task.abort();
    }
    // The earliest hop where the data was altered explains the rest; check them in order.
    let hop_difference = (0..n).find_map(|i| {
        let up = at_servers[i].mismatch().map(|m| {
            format!(
                "what the server of connection {} of {n} received: {m}",
                i + 1
            )
        });
        let down = at_clients.get(i).and_then(StreamCheck::mismatch).map(|m| {
            format!(
                "what the client read back from connection {} of {n}: {m}",
                i + 1
            )
        });
        up.or(down)
    });
    let size = mib(payload.len() as u64);
    match (result, hop_difference) {
        (Ok(()), None) => {
            let took = started.elapsed();
            cx.trace.event(format_args!(
                "{size} through {n} connection(s) intact at every hop in {:.2} s",
                took.as_secs_f64()
            ));
            Ok(took)
        }
        (far_end, Some(difference)) => Err(Failure::new(
            format!("the {size} sent into the chain of {n} connection(s) pass every connection unchanged, both ways"),
            match far_end {
                Ok(()) => format!("{difference} (the far end received it intact: the changes cancelled out)"),
                Err(_) => difference,
            },
        )
        .hint(ALTERED_HINT)),
        (Err(mismatch), None) => Err(Failure::new(
            format!("the {size} sent into the chain of {n} connection(s) arrive at the far end unchanged"),
            mismatch.to_string(),
        )
        .hint(
            "the proxy loses or alters data under load: usual causes are ignoring short writes \
             (write() may take fewer bytes than offered) or writing a buffer that was not filled",
        )),
    }
}

async fn blocked_mix(mut cx: Ctx, flooder: Flooder) -> Result<(), Stop> {
    // Everything the bulk needs is made before anything blocks, so that the blocked window
    // holds only the proxy's work: a slow tprox (a debug build on a loaded machine) must not
    // look like a frozen proxy.
    let payload: Arc<[u8]> = cx.payload(cx.scale.bulk_bytes).into();
    let activity = Activity::new();
    let hops = open_bulk_chain(&cx, &payload, &activity).await?;
    // The blocked connection: one peer writes as fast as it can, the other never reads.
    let (client, server) = cx.open_pair().await?;
    let (blocked, _never_read) = match flooder {
        Flooder::Client => (client, server),
        Flooder::Server => (server, client),
    };
    let (mut blocked_rx, blocked_tx) = blocked.into_split();
    let progress = Progress::new();
    let mut flooding = flood(blocked_tx, UNBOUNDED_CAP, progress.clone());
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
            match flooder {
                Flooder::Client => "the proxy stops reading from a client whose server does not read (backpressure)",
                Flooder::Server => "the proxy stops reading from a server whose client does not read (backpressure)",
            },
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
    let mut aborted =
        tokio::spawn(async move { wait_end(&mut blocked_rx, Duration::from_secs(3600)).await });

    let lateness = Lateness::watch();
    let result = stream_through_chain(&cx, hops, &payload, &activity).await;
    let aborted_at = match (aborted.is_finished(), flooding.is_finished()) {
        (true, _) => (&mut aborted).await.ok().flatten().map(|ended| ended.at),
        (false, true) => match (&mut flooding).await {
            Ok(FloodEnd::Failed(_, at)) => Some(at),
            _ => None,
        },
        (false, false) => None,
    };
    aborted.abort();
    flooding.abort();
    if let Err(failure) = result {
        return Err(Failure::new(
            format!("while one connection is blocked, {}", failure.expected),
            failure.observed,
        )
        .hint("one blocked peer froze the other connections: the proxy blocks in a write (or holds a shared lock while writing) instead of serving the others")
        .into());
    }
    let Some(aborted_at) = aborted_at else {
        return Ok(());
    };
    let since = |at: Instant| at.saturating_duration_since(blocked_at).as_secs_f64();
    let (began, pause) = activity.longest_pause_before(aborted_at);
    cx.trace.event(format_args!(
        "the proxy closed the blocked connection {:.2} s after it blocked; the longest pause of the other connections before that: {:.3} s from {:.2} s (worst scheduling delay {:.1} ms)",
        since(aborted_at),
        pause.as_secs_f64(),
        since(began),
        lateness.worst().as_secs_f64() * 1000.0
    ));
    // Nothing at all moved from the bulk's start until the close (as tprox may see it late):
    // frozen, whatever the load, where the span is long enough to tell.
    let late = lateness.worst() * LATENESS_FACTOR + Duration::from_millis(50);
    let (started, first) = activity.first_move();
    let judged_until = aborted_at.checked_sub(late).unwrap_or(started);
    let span = judged_until.saturating_duration_since(started);
    if span >= cx.stall.mul_f64(FROZEN_SPAN_SHARE)
        && first.is_none_or(|first| first >= judged_until)
    {
        return Err(Failure::new(
            "while one connection is blocked, the other connections keep moving",
            format!(
                "nothing moved on the {} other connection(s) from the start of their bulk transfer until the proxy closed the blocked connection, {:.1} s after it blocked (the bulk had started {:.1} s after it blocked)",
                cx.scale.chain_length,
                since(aborted_at),
                since(started)
            ),
        )
        .hint("one blocked peer froze the other connections until the stall timeout freed it: the proxy blocks in a write (or holds a shared lock while writing) instead of serving the others")
        .into());
    }
    // A long pause while the blocked connection was open. A proxy is not charged for tprox's
    // own scheduling delay.
    let frozen = cx.stall.mul_f64(FROZEN_SHARE) + lateness.worst() * LATENESS_FACTOR;
    if pause >= frozen {
        return Err(Failure::new(
            format!(
                "while one connection is blocked, the other connections keep moving: never {:.2} s (half the stall timeout, and {LATENESS_FACTOR} times the worst scheduling delay measured) without a byte",
                frozen.as_secs_f64()
            ),
            format!(
                "nothing moved on the {} other connection(s) for {:.1} s, from {:.1} s after the connection blocked; the proxy closed the blocked connection {:.1} s after it blocked",
                cx.scale.chain_length,
                pause.as_secs_f64(),
                since(began),
                since(aborted_at)
            ),
        )
        .hint("one blocked peer froze the other connections until the stall timeout freed it: the proxy blocks in a write (or holds a shared lock while writing) instead of serving the others")
        .into());
    }
    Ok(())
}

async fn duplex(mut cx: Ctx) -> Result<(), Stop> {
    let up = cx.payload(DUPLEX_UP);
    let down = cx.payload(DUPLEX_DOWN);
    let (client, server) = cx.open_pair().await?;
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let (up_sent, down_sent) = (up.clone(), down.clone());
    // Both peers write and read at the same time; neither shuts down until the end.
    let writers = [
        tokio::spawn(async move {
            let _ = client_tx.write_all(&up_sent).await;
            client_tx
        }),
        tokio::spawn(async move {
            let _ = server_tx.write_all(&down_sent).await;
            server_tx
        }),
    ];
    let started = Instant::now();
    let (at_server, at_client) = tokio::join!(
        expect_stream(&mut server_rx, &up, PROMPT),
        expect_stream(&mut client_rx, &down, PROMPT),
    );
    for writer in &writers {
        writer.abort();
    }
    let describe = |result: Result<(), crate::net::Mismatch>, bytes: usize| match result {
        Ok(()) => format!("all {} arrived", mib(bytes as u64)),
        Err(m) => m.to_string(),
    };
    if at_server.is_ok() && at_client.is_ok() {
        cx.trace.event(format_args!(
            "{} up and {} down in {:.2} s",
            mib(DUPLEX_UP as u64),
            mib(DUPLEX_DOWN as u64),
            started.elapsed().as_secs_f64()
        ));
        return Ok(());
    }
    Err(Failure::new(
        format!(
            "{} from client to server and {} from server to client, at the same time, all arrive",
            mib(DUPLEX_UP as u64),
            mib(DUPLEX_DOWN as u64)
        ),
        format!(
            "at the server: {}; at the client: {}",
            describe(at_server, DUPLEX_UP),
            describe(at_client, DUPLEX_DOWN)
        ),
    )
    .hint("the proxy serves one direction at a time (a blocking read on one socket while the other has data), so the directions wait for each other")
    .into())
}
