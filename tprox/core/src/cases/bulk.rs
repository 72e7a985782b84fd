//! Bulk: a large stream through a chain of connections, alone and next to a blocked connection
//! (R1–R4).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use tokio::net::TcpStream;

use crate::case::{Case, Level};
use crate::cases::echo::{open_chain, ALTERED_HINT};
use crate::clock::LATENESS_FACTOR;
use crate::harness::{Ctx, PROMPT};
use crate::heartbeat::{Beats, Heartbeat, BEAT};
use crate::net::{
    checked_copy, expect_stream, expect_stream_moving, flood, mib, FloodEnd, Progress, StreamCheck,
};
use crate::outcome::{Failure, Stop};
use crate::rules::Rule;

/// Bytes a client may push at a destination that reads nothing before tprox concludes that the
/// proxy buffers without bound. Kernel socket buffers on loopback can legitimately absorb tens
/// of MiB (Linux autotunes receive buffers up to `tcp_rmem`'s maximum, 32 MiB by default), so
/// the bound is well above that.
pub(crate) const UNBOUNDED_CAP: u64 = 128 * 1024 * 1024;

/// How long writes must make no progress before a connection counts as blocked.
pub(crate) const BLOCKED_QUIET: Duration = Duration::from_millis(300);

/// The blocked-mix cases judge freezing, not speed, by a heartbeat ([`crate::heartbeat`]):
/// from before the flood starts until the bulk ends, tprox sends a few bytes every 5 ms through
/// one more connection and times where they arrive, on threads outside its busy runtime. A
/// proxy frozen by the blocked write stops them from the moment its write blocks until its
/// stall timeout frees it (about T); a correct proxy, however slow, passes each on within its
/// own scheduling delay. So the case fails if the beats pause, while the blocked connection is
/// open, for [`FROZEN_SHARE`] × T plus four times the worst delay the heartbeat's writer
/// measured for itself; or if they pause for [`FROZEN_SPAN_SHARE`] × T (and at least four
/// times that delay plus 50 ms) and start again only as the proxy closes the blocked connection
/// (a proxy whose own stall timeout is short). The bulk only has to arrive intact, with no
/// pause of PROMPT: a slow proxy or a loaded machine need not be fast.
pub const FROZEN_SHARE: f64 = 0.5;
/// The shortest pause, as a share of T, that counts as frozen when the beats resume only as
/// the proxy closes the blocked connection.
pub const FROZEN_SPAN_SHARE: f64 = 0.25;
/// How much earlier than the close the beats may resume and still count as freed by it: the
/// watching threads see the close and the beats within the machine's delay of each other.
const CLOSE_SEEN: Duration = Duration::from_millis(20);
/// Added to the delay allowance for the shortest pause that counts as freed by the close.
const FREED_MIN: Duration = Duration::from_millis(50);

pub static CHAIN_20: Case = Case {
    id: "bulk/chain-20",
    name: "Bulk data, 20 connections",
    requirement: "A large stream MUST arrive unchanged through many connections at once.",
    rules: &[Rule::R1, Rule::R2],
    level: Level::Must,
    alone: false,
    assumes: "No limit on the total time: only a pause of PROMPT (5 s) in which no byte moves on any connection of the chain fails. Any throughput passes.",
    body: |cx| Box::pin(chain_20(cx)),
};

pub static BLOCKED_MIX: Case = Case {
    id: "bulk/blocked-mix",
    name: "Mix of blocked and normal",
    requirement: "When one peer stops reading, the proxy MUST stop reading from its sender instead of buffering without limit, and every other connection MUST keep its full service.",
    rules: &[Rule::R3, Rule::R4],
    level: Level::Must,
    alone: false,
    assumes: "No limit on the bulk's total time, and the proxy may abort the blocked connection whenever its stall timeout says. A connection counts as blocked after 300 ms without write progress. Freezing is judged by a heartbeat, a few bytes every 5 ms through one more connection, timed by threads of tprox's own outside its busy runtime: it fails if the beats pause for T/2 (plus four times the scheduling delay those threads measure) while the blocked connection is open, or pause for T/4 and resume only as the proxy closes the blocked connection (a frozen proxy passes nothing on for about T; a slow one passes each beat on within its own scheduling delay).",
    body: |cx| Box::pin(blocked_mix(cx, Flooder::Client)),
};

pub static BLOCKED_DOWNLOAD: Case = Case {
    id: "bulk/blocked-download",
    name: "Mix of blocked download and normal",
    requirement: "When a client stops reading a large download, the proxy MUST stop reading from its server instead of buffering without limit, and every other connection MUST keep its full service.",
    rules: &[Rule::R3, Rule::R4],
    level: Level::Must,
    alone: false,
    assumes: "No limit on the bulk's total time, and the proxy may abort the blocked connection whenever its stall timeout says. A connection counts as blocked after 300 ms without write progress. Freezing is judged by a heartbeat, a few bytes every 5 ms through one more connection, timed by threads of tprox's own outside its busy runtime: it fails if the beats pause for T/2 (plus four times the scheduling delay those threads measure) while the blocked connection is open, or pause for T/4 and resume only as the proxy closes the blocked connection (a frozen proxy passes nothing on for about T; a slow one passes each beat on within its own scheduling delay).",
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
    let hops = open_bulk_chain(&cx, &payload).await?;
    stream_through_chain(&cx, hops, &payload).await?;
    Ok(())
}

/// Opens the chain for bulk data: `scale.chain_length` echo connections, each checking what
/// its server receives against `payload`.
async fn open_bulk_chain(
    cx: &Ctx,
    payload: &Arc<[u8]>,
) -> Result<Vec<(TcpStream, StreamCheck)>, Failure> {
    open_chain(cx, cx.scale.chain_length, |_| {
        StreamCheck::new(payload.clone())
    })
    .await
}

/// Streams `payload` through a chain of echo connections and checks that every hop carries
/// exactly it: what each server receives, what each client reads back, and what arrives at the
/// far end.
async fn stream_through_chain(
    cx: &Ctx,
    hops: Vec<(TcpStream, StreamCheck)>,
    payload: &Arc<[u8]>,
) -> Result<Duration, Failure> {
    let n = hops.len();
    let started = Instant::now();
    let mut at_servers = Vec::with_capacity(n);
    let mut readers = Vec::with_capacity(n);
    let mut writers = Vec::with_capacity(n);
    for (client, at_server) in hops {
        let (rx, tx) = client.into_split();
        readers.push(rx);
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
    // Bytes cross 2n sockets of the proxy and n relays of tprox's before they arrive: on a
    // loaded machine the first may take longer than PROMPT. Stalled means nothing moved at
    // any hop.
    let moved = || {
        let counted = at_servers.iter().chain(&at_clients);
        counted.map(StreamCheck::received).sum::<usize>()
    };
    let result = expect_stream_moving(&mut last, payload, PROMPT, moved).await;
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
    // holds only the proxy's work.
    let payload: Arc<[u8]> = cx.payload(cx.scale.bulk_bytes).into();
    let hops = open_bulk_chain(&cx, &payload).await?;
    let (beat_client, beat_server) = cx.open_pair().await?;
    // The blocked connection: one peer writes as fast as it can, the other never reads.
    let (client, server) = cx.open_pair().await?;
    let (blocked, _never_read) = match flooder {
        Flooder::Client => (client, server),
        Flooder::Server => (server, client),
    };
    // The heartbeat runs from before the flood: a proxy that freezes when its write blocks
    // freezes the beats from that moment, not from when tprox notices the block.
    let heartbeat = Heartbeat::start(beat_client, beat_server, &blocked)
        .map_err(|e| Stop::Skip(format!("tprox could not start its heartbeat threads: {e}")))?;
    let (_blocked_rx, blocked_tx) = blocked.into_split();
    let progress = Progress::new();
    let flooding = flood(blocked_tx, UNBOUNDED_CAP, progress.clone());
    if !progress
        .wait_blocked(BLOCKED_QUIET, Duration::from_secs(20))
        .await
        || flooding.is_finished()
    {
        let observed = match flooding.await {
            Ok(FloodEnd::Capped(_)) => format!(
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
    let blocked_at = progress.last();
    cx.trace.event(format_args!(
        "blocked connection stalled after {} accepted",
        mib(progress.bytes())
    ));
    let result = stream_through_chain(&cx, hops, &payload).await;
    flooding.abort();
    let beats = heartbeat.beats();
    drop(heartbeat);
    cx.trace
        .event(format_args!("heartbeat: {}", beats.describe(blocked_at)));
    if let Err(failure) = result {
        return Err(Failure::new(
            format!("while one connection is blocked, {}", failure.expected),
            failure.observed,
        )
        .hint(FROZEN_HINT)
        .into());
    }
    judge_freeze(&beats, cx.stall, blocked_at, cx.scale.chain_length + 1).map_err(Stop::from)
}

const FROZEN_HINT: &str = "one blocked peer froze the other connections until the stall timeout freed it: the proxy blocks in a write (or holds a shared lock while writing) instead of serving the others";

/// The verdict on freezing, from what the heartbeat saw (see [`FROZEN_SHARE`]). `others` is
/// how many connections besides the blocked one were open, for the message.
fn judge_freeze(
    beats: &Beats,
    stall: Duration,
    blocked_at: Instant,
    others: usize,
) -> Result<(), Failure> {
    let since = |at: Instant| at.saturating_duration_since(blocked_at).as_secs_f64();
    let closed = beats.closed.map_or(String::new(), |at| {
        format!(
            "; the proxy closed the blocked connection {:.2} s after it blocked",
            since(at)
        )
    });
    // Beats that stopped for good: the proxy closed or broke a connection that was moving.
    if let Some(ended) = &beats.ended {
        return Err(Failure::new(
            "while one connection is blocked, the other connections stay open and keep moving",
            format!(
                "on tprox's heartbeat connection (a few bytes every {} ms, one of the {others} other connections): {ended}{closed}",
                BEAT.as_millis()
            ),
        )
        .hint("the proxy closes or breaks connections that are moving when another one blocks: only a connection whose own writes make no progress may be aborted"));
    }
    let delay = beats.delay * LATENESS_FACTOR;
    let long = stall.mul_f64(FROZEN_SHARE) + delay;
    let before_close = |began: Instant| beats.closed.is_none_or(|closed| began < closed);
    if let Some(&(began, pause)) = beats
        .pauses
        .iter()
        .filter(|(began, pause)| before_close(*began) && *pause >= long)
        .max_by_key(|(_, pause)| *pause)
    {
        return Err(Failure::new(
            format!(
                "while one connection is blocked, the other connections keep moving: never {:.2} s (half the stall timeout, and {LATENESS_FACTOR} times the worst scheduling delay measured) without a byte",
                long.as_secs_f64()
            ),
            format!(
                "tprox's heartbeat (a few bytes every {} ms through one of the {others} other connections) did not arrive for {:.2} s, from {:.2} s after the connection blocked{closed}",
                BEAT.as_millis(),
                pause.as_secs_f64(),
                since(began),
            ),
        )
        .hint(FROZEN_HINT));
    }
    // A shorter pause that ended only when the proxy closed the blocked connection: the close
    // is what let the others move again.
    let Some(closed_at) = beats.closed else {
        return Ok(());
    };
    let resumed_by_close = closed_at - (delay + CLOSE_SEEN);
    let shortest = stall.mul_f64(FROZEN_SPAN_SHARE).max(delay + FREED_MIN);
    match beats.pauses.iter().find(|(began, pause)| {
        *began < closed_at && *began + *pause >= resumed_by_close && *pause >= shortest
    }) {
        Some(&(began, pause)) => Err(Failure::new(
            "while one connection is blocked, the other connections keep moving, not only once the proxy gives up on the blocked one",
            format!(
                "tprox's heartbeat (a few bytes every {} ms through one of the {others} other connections) did not arrive for {:.2} s, from {:.2} s after the connection blocked until the proxy closed the blocked connection, {:.2} s after it blocked",
                BEAT.as_millis(),
                pause.as_secs_f64(),
                since(began),
                since(closed_at),
            ),
        )
        .hint(FROZEN_HINT)),
        None => Ok(()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(2);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Beats that started at `origin` with the given pauses (offset from `origin`, length) and
    /// a close at `closed` ms, if any, and a writer delay of `delay`.
    fn beats(origin: Instant, pauses: &[(u64, u64)], closed: Option<u64>, delay: u64) -> Beats {
        Beats {
            started: origin,
            pauses: pauses
                .iter()
                .map(|&(at, len)| (origin + ms(at), ms(len)))
                .collect(),
            arrivals: 100,
            closed: closed.map(|at| origin + ms(at)),
            delay: ms(delay),
            ended: None,
        }
    }

    #[test]
    fn short_pauses_pass_whether_or_not_the_blocked_connection_was_closed() {
        let origin = Instant::now();
        let slow = beats(origin, &[(100, 40), (900, 60), (2100, 30)], Some(2000), 10);
        assert_eq!(judge_freeze(&slow, T, origin, 21), Ok(()));
        let never_closed = beats(origin, &[(100, 40)], None, 10);
        assert_eq!(judge_freeze(&never_closed, T, origin, 21), Ok(()));
    }

    #[test]
    fn a_pause_of_the_stall_timeout_fails() {
        let origin = Instant::now();
        let frozen = beats(origin, &[(0, 2000)], Some(2000), 10);
        let failure = judge_freeze(&frozen, T, origin, 21).unwrap_err();
        assert!(
            failure.observed.contains("did not arrive for 2.00 s"),
            "{failure:?}"
        );
        // Also when the proxy never closed the blocked connection while tprox watched.
        let ongoing = beats(origin, &[(0, 1500)], None, 10);
        assert!(judge_freeze(&ongoing, T, origin, 21).is_err());
    }

    #[test]
    fn beats_that_stop_for_good_fail_with_what_ended_them() {
        let origin = Instant::now();
        let mut closed = beats(origin, &[(100, 40)], Some(2000), 10);
        closed.ended = Some("the proxy closed the heartbeat's connection".into());
        let failure = judge_freeze(&closed, T, origin, 21).unwrap_err();
        assert!(
            failure
                .observed
                .contains("closed the heartbeat's connection"),
            "{failure:?}"
        );
    }

    #[test]
    fn a_long_pause_passes_when_the_machine_is_that_slow() {
        // Half of T plus four times the delay: 1 s + 4 × 200 ms = 1.8 s.
        let origin = Instant::now();
        let loaded = beats(origin, &[(100, 1700)], Some(3000), 200);
        assert_eq!(judge_freeze(&loaded, T, origin, 21), Ok(()));
    }

    #[test]
    fn a_pause_that_ends_only_with_the_close_fails_even_if_short() {
        // A proxy whose own stall timeout is T/3: the beats resume with the close.
        let origin = Instant::now();
        let freed = beats(origin, &[(0, 700)], Some(690), 10);
        let failure = judge_freeze(&freed, T, origin, 21).unwrap_err();
        assert!(
            failure
                .expected
                .contains("not only once the proxy gives up"),
            "{failure:?}"
        );
        // The same pause ending well before the close is the proxy's own hiccup.
        let hiccup = beats(origin, &[(0, 700)], Some(1500), 10);
        assert_eq!(judge_freeze(&hiccup, T, origin, 21), Ok(()));
        // And shorter than T/4 it is not judged, close or not.
        let brief = beats(origin, &[(0, 400)], Some(390), 10);
        assert_eq!(judge_freeze(&brief, T, origin, 21), Ok(()));
    }
}
