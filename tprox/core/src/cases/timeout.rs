//! Timeouts: stalled connections are aborted after the stall timeout T, active ones never (R7).
//!
//! Time windows, relative to T and chosen so that a correct proxy on a busy 2-core machine never
//! fails, and so that a verdict at T = 2 s means what it means at T = 10 s:
//! * a stalled pair must be closed no sooner than [`EARLIEST`] × T and no later than
//!   [`LATEST`] × T plus a slack ([`Lateness::slack`]: a tenth of T, plus four times the
//!   scheduling delay measured during the case) after the proxy's own last write towards the
//!   peer that does not read, as the kernel's socket queues show it ([`ProxyWrites`]; where
//!   they cannot be read, after the flooding side's last write progress). A slow proxy's stall
//!   starts when *it* stops writing, not when tprox's writes stop;
//! * an active connection writes every [`ACTIVE_INTERVAL`] × T for [`ACTIVE_SPAN`] × T, and every
//!   write must be echoed within [`PROMPT`].

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::case::{Case, Level};
use crate::cases::bulk::{BLOCKED_QUIET, UNBOUNDED_CAP};
use crate::clock::{Lateness, ProxyWrites};
use crate::harness::{Ctx, PROMPT};
use crate::net::{flood, mib, read_exact_within, spawn_echo, wait_end, FloodEnd, Progress};
use crate::outcome::{Failure, Stop};
use crate::rules::Rule;

pub const EARLIEST: f64 = 0.5;
pub const LATEST: f64 = 1.5;
pub const ACTIVE_INTERVAL: f64 = 0.3;
pub const ACTIVE_SPAN: f64 = 1.5;

pub static ACTIVE: Case = Case {
    id: "timeout/active",
    name: "Non-timeout of active client",
    requirement: "A connection that makes progress MUST NOT be aborted: every write restarts the stall clock, and an idle connection holds no data.",
    rules: &[Rule::R7],
    level: Level::Must,
    alone: false,
    assumes: "Writes every 0.3 T for 1.5 T; each echo comes back within PROMPT (5 s). A proxy whose stall clock restarts on progress passes at any speed.",
    body: |cx| Box::pin(active(cx)),
};

pub static LAZY_FORWARD: Case = Case {
    id: "timeout/lazy-forward",
    name: "Timeout of lazy client",
    requirement: "When the server stops reading, the proxy MUST stop reading from the client and, once it has written nothing for T, abort both connections.",
    rules: &[Rule::R7, Rule::R4],
    level: Level::Must,
    alone: false,
    assumes: "The stall clock starts at the proxy's own last write towards the server, read from the kernel's socket queues (where they cannot be read: the client's last write progress), so a slow proxy is not charged for the time it takes to stop reading. The abort must come between 0.5 T and 1.5 T plus a slack of T/10 and four times the scheduling delay measured during the case.",
    body: |cx| Box::pin(lazy(cx, Side::Client)),
};

pub static LAZY_REVERSE: Case = Case {
    id: "timeout/lazy-reverse",
    name: "Timeout of lazy reverse client",
    requirement: "When the client stops reading, the proxy MUST stop reading from the server and, once it has written nothing for T, abort both connections.",
    rules: &[Rule::R7, Rule::R4],
    level: Level::Must,
    alone: false,
    assumes: "The stall clock starts at the proxy's own last write towards the client, read from the kernel's socket queues (where they cannot be read: the server's last write progress). The abort must come between 0.5 T and 1.5 T plus a slack of T/10 and four times the scheduling delay measured during the case.",
    body: |cx| Box::pin(lazy(cx, Side::Server)),
};

async fn active(mut cx: Ctx) -> Result<(), Stop> {
    let (mut client, server) = cx.open_pair().await?;
    spawn_echo(server);
    let interval = cx.stall.mul_f64(ACTIVE_INTERVAL);
    let span = cx.stall.mul_f64(ACTIVE_SPAN);
    let start = Instant::now();
    for i in 1.. {
        // Text: this case is about the clock, and a random byte string would make a proxy
        // that mishandles NUL bytes fail it for some seeds and not others.
        let message = cx.text(8);
        let at = start.elapsed().as_secs_f64();
        let echoed = match client.write_all(&message).await {
            Ok(()) => read_exact_within(&mut client, message.len(), PROMPT)
                .await
                .map_err(|s| s.to_string()),
            Err(e) => Err(format!("the write failed ({e})")),
        };
        match echoed {
            Ok(got) if got == message => cx.trace.event(format_args!("write {i} at {at:.1} s echoed")),
            Ok(_) => {
                return Err(Failure::new(
                    format!("write {i} echoed unchanged"),
                    "the echo differs from what was sent",
                )
                .into())
            }
            Err(observed) => {
                return Err(Failure::new(
                    format!(
                        "a connection that writes every {:.1} s is never aborted (stall timeout {:.1} s)",
                        interval.as_secs_f64(),
                        cx.stall.as_secs_f64()
                    ),
                    format!("write {i}, {at:.1} s after the connection opened: {observed}"),
                )
                .hint("the proxy's timeout does not restart on progress: it measures from when the connection opened, or times out idle connections that hold no data")
                .into())
            }
        }
        if start.elapsed() >= span {
            return Ok(());
        }
        tokio::time::sleep_until((start + interval * i).into()).await;
    }
    unreachable!("the loop returns")
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

impl Side {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
    pub(crate) fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// `writer` floods a peer that never reads; the proxy must abort the pair about T after its
/// own writes towards that peer stop making progress, and close both connections.
async fn lazy(cx: Ctx, writer: Side) -> Result<(), Stop> {
    let (client, server) = cx.open_pair().await?;
    let (flooder, mut idle_peer): (TcpStream, TcpStream) = match writer {
        Side::Client => (client, server),
        Side::Server => (server, client),
    };
    let (w, r) = (writer.name(), writer.other().name());
    let stall = cx.stall;
    let lateness = Lateness::watch();
    let proxy_writes = ProxyWrites::watch(&idle_peer);
    let (mut flooder_rx, flooder_tx) = flooder.into_split();
    let progress = Progress::new();
    let mut flooding = flood(flooder_tx, UNBOUNDED_CAP, progress.clone());
    // The stall clock's start: the proxy's own last write towards the idle peer where the
    // kernel shows it, else the flooder's last progress.
    let stalled_since = || {
        proxy_writes
            .as_ref()
            .and_then(ProxyWrites::last)
            .unwrap_or_else(|| progress.last())
    };
    let reference = if proxy_writes.is_some() {
        format!("the proxy's last write towards the {r}")
    } else {
        format!("the {w}'s last write progress")
    };

    // The proxy may close the flooder's connection however it likes: the flooder's reads see
    // EOF or a reset, or its blocked write fails. Whichever comes first marks the abort.
    let closed_at = loop {
        tokio::select! {
            ended = wait_end(&mut flooder_rx, Duration::from_millis(100)) => {
                if let Some(ended) = ended {
                    cx.trace.event(format_args!("{w} saw {}", ended.end));
                    break ended.at;
                }
            }
            end = &mut flooding => match end {
                Ok(FloodEnd::Failed(e, at)) => {
                    cx.trace.event(format_args!("{w}'s write failed: {e}"));
                    break at;
                }
                _ => return Err(Failure::new(
                    format!("the proxy stops reading from the {w} while the {r} reads nothing (backpressure)"),
                    format!("the {w} wrote {} and the proxy kept accepting", mib(progress.bytes())),
                )
                .hint("the proxy buffers without bound: it must stop reading from one side while it cannot write to the other")
                .into()),
            },
        }
        let latest = stall.mul_f64(LATEST) + lateness.slack(stall);
        let quiet = stalled_since().elapsed();
        if quiet > latest && progress.last().elapsed() > BLOCKED_QUIET {
            return Err(Failure::new(
                format!("the proxy aborts the pair about {:.1} s after {reference} (at the latest {:.2} s)", stall.as_secs_f64(), latest.as_secs_f64()),
                format!(
                    "the {w}'s writes stopped after {}, and the connection was still open {:.1} s after {reference}",
                    mib(progress.bytes()),
                    quiet.as_secs_f64()
                ),
            )
            .hint("the proxy has no stall timeout, or one far longer than T: a write that cannot make progress must be abandoned after T")
            .into());
        }
    };
    flooding.abort();
    let since = stalled_since();
    let waited = closed_at.saturating_duration_since(since);
    cx.trace.event(format_args!(
        "{w} connection closed {:.2} s after {reference} ({} accepted from the {w}; {:.2} s after the {w}'s own last progress; worst scheduling delay {:.1} ms)",
        waited.as_secs_f64(),
        mib(progress.bytes()),
        closed_at.saturating_duration_since(progress.last()).as_secs_f64(),
        lateness.worst().as_secs_f64() * 1000.0
    ));
    if waited < stall.mul_f64(EARLIEST) {
        return Err(Failure::new(
            format!(
                "the proxy aborts the pair about {:.1} s after {reference}, and not before {:.1} s",
                stall.as_secs_f64(),
                stall.mul_f64(EARLIEST).as_secs_f64()
            ),
            format!(
                "it closed the {w}'s connection {:.2} s after {reference}, having accepted {} from the {w}",
                waited.as_secs_f64(),
                mib(progress.bytes())
            ),
        )
        .hint("the proxy gives up too early: the stall clock must start when a write stops making progress, not when data stops arriving")
        .into());
    }
    match wait_end(&mut idle_peer, PROMPT).await {
        Some(ended) => {
            cx.trace.event(format_args!("{r} saw {} after {} buffered byte(s)", ended.end, ended.bytes));
            Ok(())
        }
        None => Err(Failure::new(
            format!("when the pair is aborted, the {r}'s connection is closed too"),
            format!("the {w}'s connection was closed, but the {r}'s stayed open for {} s more", PROMPT.as_secs()),
        )
        .hint("the proxy closes only the socket whose write timed out; it must close both connections of the pair")
        .into()),
    }
}

pub static IDLE: Case = Case {
    id: "timeout/idle",
    name: "Non-timeout of idle connection",
    requirement: "A connection that holds no data MUST NOT be aborted, however long it is idle.",
    rules: &[Rule::R7],
    level: Level::Must,
    alone: false,
    assumes: "Quiet for 1.5 T, then the echo comes back within PROMPT (5 s).",
    body: |cx| Box::pin(idle(cx)),
};

pub static SLOW_READER: Case = Case {
    id: "timeout/slow-reader",
    name: "Non-timeout of slow reader",
    requirement: "A slow but steady reader MUST NOT be aborted, in either direction, however long the proxy's buffer stays full: every write that makes progress, however small, restarts the stall clock.",
    rules: &[Rule::R7],
    level: Level::Must,
    alone: false,
    assumes: "Reads 1 MiB every 0.25 T for 2.5 T in each direction; each read may wait max(PROMPT, T), so a proxy that is slow but never aborts passes.",
    body: |cx| Box::pin(slow_reader(cx)),
};

/// How long timeout/idle stays silent, relative to T.
pub const IDLE_SPAN: f64 = 1.5;
/// timeout/slow-reader: the reader reads [`SLOW_READ`] bytes every [`SLOW_INTERVAL`] × T,
/// for [`SLOW_SPAN`] × T, in each direction, while the writer keeps the proxy's buffers full.
///
/// The span is well over 2 T so that a stall clock started when the proxy's buffer first
/// filled, and never restarted by the progress since, runs out during the case even where the
/// proxy checks its clocks only every T/2 or so. The read size is what makes progress visible
/// to the proxy: Linux reports a socket writable only once about a third of its send buffer is
/// free, and loopback send buffers autotune up to 4 MiB, so a read of a few KiB would leave a
/// correct proxy without any progress to see; each read frees 1 MiB.
pub const SLOW_READ: usize = 1024 * 1024;
pub const SLOW_INTERVAL: f64 = 0.25;
pub const SLOW_SPAN: f64 = 2.5;

async fn idle(mut cx: Ctx) -> Result<(), Stop> {
    let (mut client, server) = cx.open_pair().await?;
    spawn_echo(server);
    let span = cx.stall.mul_f64(IDLE_SPAN);
    cx.trace
        .event(format_args!("idle for {:.1} s", span.as_secs_f64()));
    tokio::time::sleep(span).await;
    let message = cx.text(8);
    let echoed = match client.write_all(&message).await {
        Ok(()) => read_exact_within(&mut client, message.len(), PROMPT)
            .await
            .map_err(|s| s.to_string()),
        Err(e) => Err(format!("the write failed ({e})")),
    };
    match echoed {
        Ok(got) if got == message => Ok(()),
        Ok(_) => Err(Failure::new("the echo after the idle time is intact", "it differs").into()),
        Err(observed) => Err(Failure::new(
            format!(
                "a connection idle for {:.1} s (longer than the stall timeout) is still open and echoes",
                span.as_secs_f64()
            ),
            observed,
        )
        .hint("the proxy times out idle connections (a read timeout): only a write that cannot make progress may be timed out")
        .into()),
    }
}

async fn slow_reader(cx: Ctx) -> Result<(), Stop> {
    // Both directions at once, each on a pair of its own: a proxy's stall clock may be kept
    // per direction, and both must restart on progress.
    let (client, server) = cx.open_pair().await?;
    let (download_client, download_server) = cx.open_pair().await?;
    let (upload, download) = tokio::join!(
        slow_reader_one_way(&cx, client, server, Side::Client),
        slow_reader_one_way(&cx, download_server, download_client, Side::Server),
    );
    upload?;
    download?;
    Ok(())
}

/// `writer` floods; its peer reads [`SLOW_READ`] bytes every [`SLOW_INTERVAL`] × T for
/// [`SLOW_SPAN`] × T, so the proxy holds data the whole time and every write it makes has to
/// wait for the next read.
async fn slow_reader_one_way(
    cx: &Ctx,
    writer: TcpStream,
    mut reader: TcpStream,
    writer_side: Side,
) -> Result<(), Failure> {
    let (w, r) = (writer_side.name(), writer_side.other().name());
    let (mut writer_rx, writer_tx) = writer.into_split();
    let progress = Progress::new();
    let flooding = flood(writer_tx, UNBOUNDED_CAP, progress.clone());
    let interval = cx.stall.mul_f64(SLOW_INTERVAL);
    let span = cx.stall.mul_f64(SLOW_SPAN);
    // How long one read may wait for its 1 MiB. At a large T the reads are seconds apart, and
    // a proxy that is slow but never aborts (several connections taking turns at one lock)
    // must not fail a case about aborting for want of a few seconds; a proxy that aborts ends
    // the read early, and one that loses data stalls it however long the wait.
    let patience = PROMPT.max(cx.stall);
    let start = Instant::now();
    let mut received = 0usize;
    let mut reads = 0;
    let result = loop {
        tokio::time::sleep(interval).await;
        match read_exact_within(&mut reader, SLOW_READ, patience).await {
            Ok(_) => {
                received += SLOW_READ;
                reads += 1;
            }
            Err(short) => {
                break Err(format!(
                    "after {} and {:.1} s, the {r}'s read got {short}",
                    mib(received as u64),
                    start.elapsed().as_secs_f64()
                ))
            }
        }
        if let Some(ended) = wait_end(&mut writer_rx, Duration::ZERO).await {
            break Err(format!(
                "the {w}'s connection ended ({}) after {:.1} s",
                ended.end,
                start.elapsed().as_secs_f64()
            ));
        }
        if start.elapsed() >= span {
            break Ok(());
        }
    };
    flooding.abort();
    if progress.bytes() >= UNBOUNDED_CAP {
        // Not this case's rule: the rules of backpressure (R4) are judged by the cases that
        // list it. The flood stopped at its bound without an EOF, so nothing here changed
        // for the proxy but that tprox wrote no more.
        cx.trace.event(format_args!(
            "{w} → {r}: the proxy accepted the {w}'s whole flood ({}) without pushing back (R4: the lazy timeout, memory and blocked-mix cases judge that); the {w} then stopped writing, its side left open",
            mib(progress.bytes())
        ));
    }
    match result {
        Ok(()) => {
            cx.trace.event(format_args!(
                "{w} → {r}: {r} read {} in {reads} slow reads over {:.1} s, never aborted",
                mib(received as u64),
                span.as_secs_f64()
            ));
            Ok(())
        }
        Err(observed) => Err(Failure::new(
            format!(
                "a {r} reading {} KiB every {:.1} s from a {w} that writes without pause keeps its connection for {:.1} s (stall timeout {:.1} s)",
                SLOW_READ / 1024,
                interval.as_secs_f64(),
                span.as_secs_f64(),
                cx.stall.as_secs_f64()
            ),
            observed,
        )
        .hint("the proxy's stall clock does not restart on progress: it must measure from the last byte written, not from when its buffer filled, the data arrived or the connection opened")),
    }
}
