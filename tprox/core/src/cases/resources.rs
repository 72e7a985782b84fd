//! Resources: the proxy's descriptors, memory and CPU, read under /proc (R4, R9, R10).
//!
//! Bounds, documented here and in docs/running.md:
//! * descriptors: after [`FD_CYCLES`] connections have come and gone, the count of sockets is
//!   back to its baseline (a slack of [`FD_SLACK`] for descriptors a runtime opens lazily);
//!   and after [`FD_PATH_PAIRS`] pairs ended on each error path (resets from either side, a
//!   refused destination, a failed write; [`FD_STALL_PAIRS`] by the stall timeout), measured
//!   path by path. Other descriptors (pipes, epoll and event descriptors) are judged only by
//!   whether they grow with the connections: once the first connections have come and gone,
//!   the rest may add fewer than one for every [`OTHERS_PER_CONNECTION`] connections ([`FD_SLACK`]
//!   are always allowed). A runtime may keep a pool of them that grows to the peak number
//!   of connections at once and stays (Go splices through pipes it pools until its next
//!   collection), which is no leak;
//! * memory: with [`MEMORY_PAIRS`] connections blocked on peers that do not read, resident
//!   memory grows by less than [`MEMORY_BOUND`];
//! * CPU: with idle and blocked connections held open, the proxy uses less than
//!   [`CPU_SHARE`] of one core over the sampling window.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::case::{Case, Level};
use crate::cases::bulk::{BLOCKED_QUIET, UNBOUNDED_CAP};
use crate::clock::ProxyWrites;
use crate::figure::Figure;
use crate::harness::{Ctx, PROMPT};
use crate::net::{flood, mib, read_exact_within, spawn_echo, wait_end, Progress};
use crate::outcome::{Failure, Stop};
use crate::probe::{sample, Usage};
use crate::rules::Rule;

pub const FD_CYCLES: usize = 120;
pub const FD_SLACK: usize = 2;
/// Connections per other descriptor that count as growth with the connections: a leak of one
/// pipe end per pair adds one per connection, a pool adds nothing once it has reached the peak.
pub const OTHERS_PER_CONNECTION: usize = 4;
pub const MEMORY_PAIRS: usize = 4;
/// Bytes each blocked connection may push before tprox stops pushing.
pub const MEMORY_PUSH: u64 = 48 * 1024 * 1024;
pub const MEMORY_BOUND: u64 = 32 * 1024 * 1024;
pub const CPU_SHARE: f64 = 0.2;

pub static FDS: Case = Case {
    id: "resources/fds",
    name: "Descriptors released",
    requirement: "Descriptors of a closed pair MUST be released: after any number of connections the proxy's descriptor count returns to its baseline.",
    rules: &[Rule::R10, Rule::R6],
    level: Level::Must,
    alone: false,
    assumes: "Linux /proc. The count of sockets returns to the baseline (plus 2 for descriptors a runtime opens lazily) within PROMPT (5 s) of the last close. Other descriptors (pipes, epoll and event descriptors) may stay as a runtime's pool, but the 110 connections after the first 10 must add fewer than one for every 4 of them (2 are always allowed).",
    body: |cx| Box::pin(fds(cx)),
};

pub static FDS_ERRORS: Case = Case {
    id: "resources/fds-errors",
    name: "Descriptors released on every ending",
    requirement: "Descriptors of a pair MUST be released however the pair ends: a reset from either side, a failed write, the stall timeout, or a destination that refuses.",
    rules: &[Rule::R10],
    level: Level::Must,
    alone: false,
    assumes: "Linux /proc. Each path's pairs end at once; tprox closes its own ends at the latest PROMPT (5 s) after the proxy should have (the stall path: 1.5 T + PROMPT), and the count of sockets must be back within PROMPT after that. Other descriptors may stay as a runtime's pool, but the paths after the first must add fewer than one for every 4 of their pairs (2 are always allowed).",
    body: |cx| Box::pin(fds_errors(cx)),
};

/// Pairs ended on each path of resources/fds-errors: more than [`FD_SLACK`], so that a leak of
/// one descriptor per pair shows.
pub const FD_PATH_PAIRS: usize = 6;
/// Pairs ended by the stall timeout, open at once (each path takes T).
pub const FD_STALL_PAIRS: usize = 3;

/// The ways a pair can end besides both EOFs, each checked on its own.
#[derive(Clone, Copy, Debug)]
enum Ending {
    ClientReset,
    ServerReset,
    Refused,
    Stalled,
    /// Last: a proxy that dies of writing into a closed socket (R11) dies here.
    WriteFailed,
}

impl Ending {
    const ALL: [Ending; 5] = [
        Ending::ClientReset,
        Ending::ServerReset,
        Ending::Refused,
        Ending::Stalled,
        Ending::WriteFailed,
    ];

    fn describe(self) -> &'static str {
        match self {
            Ending::ClientReset => "a reset from the client",
            Ending::ServerReset => "a reset from the server",
            Ending::Refused => "the destination refusing",
            Ending::Stalled => "the stall timeout (a server that never reads)",
            Ending::WriteFailed => "a failed write (the server closed while the client wrote)",
        }
    }
}

async fn fds_errors(mut cx: Ctx) -> Result<(), Stop> {
    let start = settled(&cx, 0).await?;
    let mut baseline = start.sockets;
    cx.trace.event(format_args!("baseline: {start}"));
    let mut leaks = Vec::new();
    // Other descriptors, once the first path has let a runtime's pools fill, and the pairs
    // ended since.
    let mut after_first: Option<Held> = None;
    let mut pairs_since_first = 0;
    for ending in Ending::ALL {
        let pairs = end_pairs(&mut cx, ending).await?;
        // Each path is measured from where the last one left the count, so a leak is charged
        // to the path that made it.
        let after = settled(&cx, baseline + FD_SLACK).await?;
        if let Ending::Refused = ending {
            // Only now: every dial the proxy made until the count was taken was refused, so a
            // proxy that was slow to accept cannot dodge the path by dialing after the reopen.
            cx.dest.reopen().await.map_err(|e| {
                Stop::Skip(format!(
                    "the destination port could not be listened on again: {e}"
                ))
            })?;
        }
        cx.trace.event(format_args!(
            "after {pairs} pair(s) ended by {}: {after}",
            ending.describe()
        ));
        if after.sockets > baseline + FD_SLACK {
            leaks.push(format!(
                "{} more sockets after {pairs} pairs ended by {}",
                after.sockets - baseline,
                ending.describe()
            ));
        }
        baseline = baseline.max(after.sockets);
        match after_first {
            None => after_first = Some(after),
            Some(_) => pairs_since_first += pairs,
        }
        if let Some(first) = after_first.filter(|_| pairs_since_first > 0) {
            if let Some(growth) = others_growth(first, after, pairs_since_first) {
                leaks.push(growth);
                break;
            }
        }
    }
    if leaks.is_empty() {
        return Ok(());
    }
    Err(Failure::new(
        "after pairs end by a reset, a failed write, the stall timeout or a refused destination, the proxy's sockets return to where they were, and its other descriptors do not grow with the pairs",
        format!("having had up to {} s after each path to close them: {}", PROMPT.as_secs(), leaks.join("; ")),
    )
    .hint("the proxy leaks descriptors on an error path: every way out of a pair (read error, write error, timeout, failed dial) must close both sockets, and whatever else the pair opened")
    .into())
}

/// Whether other descriptors grew with the connections between `first` and `now`, across
/// `connections` connections: the description of the growth, or `None`.
fn others_growth(first: Held, now: Held, connections: usize) -> Option<String> {
    let grown = now.others.saturating_sub(first.others);
    let bound = (connections / OTHERS_PER_CONNECTION).max(FD_SLACK + 1);
    (grown >= bound).then(|| {
        format!(
            "{grown} more descriptors that are not sockets after {connections} further connections ({} → {}): they grow with the connections",
            first.others, now.others
        )
    })
}

/// What the proxy's process group holds: its sockets, and every other descriptor.
#[derive(Debug, Clone, Copy)]
struct Held {
    sockets: usize,
    others: usize,
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sockets and {} other descriptors",
            self.sockets, self.others
        )
    }
}

/// Ends pairs by `ending`, all of a path's pairs at once; returns how many. tprox closes its
/// own ends at the latest [`PROMPT`] after the proxy should have, so that only what the proxy
/// itself keeps is counted (a proxy that does not close on a reset fails close/reset-*, not
/// this case).
async fn end_pairs(cx: &mut Ctx, ending: Ending) -> Result<usize, Stop> {
    let mut endings: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let count = match ending {
        Ending::Stalled => FD_STALL_PAIRS,
        _ => FD_PATH_PAIRS,
    };
    if let Ending::Refused = ending {
        cx.dest.close();
        for _ in 0..count {
            if let Ok(Ok(mut client)) = tokio::time::timeout(
                PROMPT,
                crate::harness::connect_client(cx.proxy_addr(), &cx.dest),
            )
            .await
            {
                cx.ask(&mut client).await;
                endings.push(tokio::spawn(async move {
                    wait_end(&mut client, PROMPT).await;
                }));
            }
        }
        join_all(endings).await;
        // The destination stays closed until the count is taken (see fds_errors).
        return Ok(count);
    }
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        pairs.push(cx.open_pair().await?);
    }
    let stall_limit = cx.stall.mul_f64(crate::cases::timeout::LATEST) + PROMPT;
    for (client, server) in pairs {
        endings.push(tokio::spawn(async move {
            match ending {
                Ending::ClientReset | Ending::ServerReset => {
                    let (resetting, mut other) = match ending {
                        Ending::ClientReset => (client, server),
                        _ => (server, client),
                    };
                    crate::cases::close::reset(resetting);
                    wait_end(&mut other, PROMPT).await;
                }
                Ending::WriteFailed => {
                    let mut client = client;
                    drop(server);
                    let deadline = Instant::now() + PROMPT;
                    while Instant::now() < deadline
                        && client.write_all(b"after close").await.is_ok()
                    {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                Ending::Stalled => {
                    let (mut rx, tx) = client.into_split();
                    let flooding = flood(tx, UNBOUNDED_CAP, Progress::new());
                    wait_end(&mut rx, stall_limit).await;
                    flooding.abort();
                    drop(server);
                }
                Ending::Refused => unreachable!("handled above"),
            }
        }));
    }
    join_all(endings).await;
    Ok(count)
}

async fn join_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

pub static MEMORY: Case = Case {
    id: "resources/memory",
    name: "Memory bounded under backpressure",
    requirement: "Whatever the peers do, the proxy's memory MUST stay bounded: connections whose peers stop reading must not make it grow.",
    rules: &[Rule::R4],
    level: Level::Must,
    alone: false,
    assumes: "Linux /proc. Resident memory is read once every flood is blocked, before 0.8 T, so before the stall timeout can free anything.",
    body: |cx| Box::pin(memory(cx)),
};

pub static CPU: Case = Case {
    id: "resources/cpu",
    name: "No busy-waiting",
    requirement: "The proxy MUST use no CPU to speak of while its connections are idle or blocked.",
    rules: &[Rule::R9],
    level: Level::Must,
    alone: true,
    assumes: "Linux /proc; runs alone. CPU time, not wall time, over 0.4 T (clamped to 0.3-2 s), so a loaded machine does not count against the proxy; the time its threads were runnable but waited for a core (schedstat) counts with it, so a loaded machine does not hide a busy-waiting proxy either.",
    body: |cx| Box::pin(cpu(cx)),
};

/// Samples the proxy, or skips the case with the reason.
fn usage(cx: &Ctx) -> Result<Usage, Stop> {
    sample(cx.proxy_pgid).map_err(Stop::Skip)
}

async fn fds(mut cx: Ctx) -> Result<(), Stop> {
    let baseline = settled(&cx, 0).await?;
    cx.trace.event(format_args!("baseline: {baseline}"));
    let target = baseline.sockets + FD_SLACK;
    let mut after_first = None;
    // Connections end in every way a pair can end: client first, server first, half-closes.
    for batch in 0..FD_CYCLES / 10 {
        let mut pairs = Vec::new();
        for _ in 0..10 {
            let (client, server) = cx.open_pair().await?;
            spawn_echo(server);
            pairs.push(client);
        }
        for (i, mut client) in pairs.into_iter().enumerate() {
            let message = cx.text(16);
            client.write_all(&message).await.ok();
            let _ = read_exact_within(&mut client, message.len(), PROMPT).await;
            // Every other connection half-closes before closing.
            if (batch + i) % 2 == 0 {
                client.shutdown().await.ok();
            }
            drop(client);
        }
        if batch == 0 {
            // What a runtime's pools hold once the first connections came and went.
            let first = settled(&cx, target).await?;
            cx.trace
                .event(format_args!("after the first 10 connections: {first}"));
            after_first = Some(first);
        }
    }
    let after = settled(&cx, target).await?;
    cx.trace
        .event(format_args!("after {FD_CYCLES} connections: {after}"));
    cx.trace.figure(Figure::new(
        "sockets held after the connections closed",
        "sockets",
        after.sockets as f64 - baseline.sockets as f64,
        FD_SLACK as f64,
    ));
    if after.sockets > target {
        return Err(Failure::new(
            format!("after {FD_CYCLES} connections have closed, the proxy's sockets return to the baseline of {}", baseline.sockets),
            format!("it holds {} sockets ({} more) {} s after the last one closed", after.sockets, after.sockets - baseline.sockets, PROMPT.as_secs()),
        )
        .hint("the proxy leaks descriptors: it must close both sockets of a pair when the pair ends, also on errors")
        .into());
    }
    let first = after_first.unwrap_or(baseline);
    if let Some(growth) = others_growth(first, after, FD_CYCLES - 10) {
        return Err(Failure::new(
            format!("after {FD_CYCLES} connections have closed, the proxy's descriptors that are not sockets (pipes, event descriptors) do not grow with the number of connections"),
            growth,
        )
        .hint("the proxy leaks a descriptor that is not a socket for every connection: a pipe for splice, a file, an epoll or event descriptor that the pair opened and its end does not close")
        .into());
    }
    Ok(())
}

/// Waits up to PROMPT for the socket count to reach `target` (0: just let the counts settle)
/// and returns the lowest counts seen, over at least two samples: a pair's end closes its
/// descriptors one by one, so one sample can catch it halfway.
async fn settled(cx: &Ctx, target: usize) -> Result<Held, Stop> {
    let deadline = Instant::now()
        + if target == 0 {
            Duration::from_millis(500)
        } else {
            PROMPT
        };
    let sample = |usage: Usage| Held {
        sockets: usage.sockets,
        others: usage.fds - usage.sockets,
    };
    let mut lowest = sample(usage(cx)?);
    let mut samples = 1;
    while samples < 2 || (Instant::now() < deadline && (target == 0 || lowest.sockets > target)) {
        samples += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = sample(usage(cx)?);
        lowest = Held {
            sockets: lowest.sockets.min(now.sockets),
            others: lowest.others.min(now.others),
        };
    }
    Ok(lowest)
}

async fn memory(cx: Ctx) -> Result<(), Stop> {
    let before = usage(&cx)?;
    let mut floods = Vec::new();
    let mut _held = Vec::new();
    for i in 0..MEMORY_PAIRS {
        let (client, server) = cx.open_pair().await?;
        // Half the connections upload into a server that never reads, half download into a
        // client that never reads.
        let (writer, idle) = if i % 2 == 0 {
            (client, server)
        } else {
            (server, client)
        };
        let (rx, tx) = writer.into_split();
        let progress = Progress::new();
        floods.push((flood(tx, MEMORY_PUSH, progress.clone()), progress));
        _held.push((rx, idle));
    }
    // Measure once every flood is blocked (or has pushed all it may), before the stall
    // timeout can free anything.
    let deadline = Instant::now() + cx.stall.mul_f64(0.8).max(Duration::from_millis(500));
    while Instant::now() < deadline {
        let settled = floods.iter().all(|(task, p)| {
            task.is_finished() || (p.bytes() > 0 && p.last().elapsed() >= BLOCKED_QUIET)
        });
        if settled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = usage(&cx)?;
    let pushed: u64 = floods.iter().map(|(_, p)| p.bytes()).sum();
    for (task, _) in &floods {
        task.abort();
    }
    let growth = after.rss.saturating_sub(before.rss);
    // How much is accepted before the floods block depends on the socket buffers the kernel
    // gave, and resident memory moves by allocator arenas: a MiB either way is not a change.
    cx.trace.figure(Figure::new(
        "memory grown with blocked connections",
        "MiB",
        growth as f64 / (1024.0 * 1024.0),
        1.0,
    ));
    cx.trace.event(format_args!(
        "{MEMORY_PAIRS} blocked connections accepted {}; resident memory {} → {}",
        mib(pushed),
        mib(before.rss),
        mib(after.rss)
    ));
    if growth >= MEMORY_BOUND {
        return Err(Failure::new(
            format!("with {MEMORY_PAIRS} connections blocked on peers that do not read, resident memory grows by less than {}", mib(MEMORY_BOUND)),
            format!("it grew by {} ({} → {}) while the blocked connections accepted {}", mib(growth), mib(before.rss), mib(after.rss), mib(pushed)),
        )
        .hint("the proxy buffers without bound: it must stop reading from a sender while it cannot write to the receiver")
        .into());
    }
    Ok(())
}

async fn cpu(cx: Ctx) -> Result<(), Stop> {
    // Idle connections: open, nothing sent.
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(cx.open_pair().await?);
    }
    // Blocked connections: a client pushing into a server that never reads.
    let mut floods = Vec::new();
    let mut blocked = Vec::new();
    for _ in 0..2 {
        let (client, server) = cx.open_pair().await?;
        let (rx, tx) = client.into_split();
        let progress = Progress::new();
        floods.push((flood(tx, MEMORY_PUSH, progress.clone()), progress));
        // Where the kernel's queues can be read, when the proxy last wrote to the server.
        let writes = ProxyWrites::watch(&server);
        blocked.push((rx, server, writes));
    }
    // Blocked means the proxy has nothing left to move, not only that the client's writes
    // paused: the kernel lets a blocked writer go on only once a third of its send buffer is
    // free, so behind a slow proxy (4 KiB per read, a pause after each) the client can be still
    // for longer than BLOCKED_QUIET while the proxy still reads and writes, waking hundreds of
    // times a second; on a loaded machine those wake-ups wait for a core, and that wait would
    // be counted below as CPU wanted. So the proxy's own writes towards the server must have
    // stopped too.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let quiet = |last: Option<Instant>| last.is_none_or(|t| t.elapsed() >= BLOCKED_QUIET);
        let clients_still = floods.iter().all(|(task, p)| {
            task.is_finished() || (p.bytes() > 0 && p.last().elapsed() >= BLOCKED_QUIET)
        });
        let proxy_still = blocked
            .iter()
            .all(|(_, _, writes)| quiet(writes.as_ref().and_then(ProxyWrites::last)));
        if clients_still && proxy_still {
            break;
        }
        if Instant::now() >= deadline {
            cx.trace.event(format_args!(
                "the blocked connections were still moving after 5 s: measuring anyway"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The window ends well before the stall timeout could abort the blocked connections.
    let window = cx
        .stall
        .mul_f64(0.4)
        .clamp(Duration::from_millis(300), Duration::from_secs(2));
    let start = usage(&cx)?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let end = usage(&cx)?;
    let elapsed = started.elapsed();
    for (task, _) in &floods {
        task.abort();
    }
    let used = end.cpu.saturating_sub(start.cpu);
    // Time it was runnable and waited for a core counts too: on a machine too loaded to give
    // a busy-waiting proxy its core, it still wanted one.
    let waited = end.waiting.saturating_sub(start.waiting);
    let share = used.as_secs_f64() / elapsed.as_secs_f64();
    let wanted = (used + waited).as_secs_f64() / elapsed.as_secs_f64();
    // CPU time is counted in clock ticks: each of the two samples may be a tick off.
    let tick = 1.0 / procfs::ticks_per_second() as f64;
    cx.trace.figure(Figure::new(
        "CPU with idle and blocked connections",
        "% of a core",
        share * 100.0,
        2.0 * tick / elapsed.as_secs_f64() * 100.0,
    ));
    cx.trace.event(format_args!(
        "CPU time over {:.2} s with 5 idle and 2 blocked connections: {:.3} s ({:.0}% of a core); waiting for a core {:.3} s",
        elapsed.as_secs_f64(),
        used.as_secs_f64(),
        share * 100.0,
        waited.as_secs_f64()
    ));
    if wanted >= CPU_SHARE {
        return Err(Failure::new(
            format!("with only idle and blocked connections, the proxy uses less than {:.0}% of a core", CPU_SHARE * 100.0),
            format!(
                "it used {:.2} s of CPU in {:.2} s ({:.0}% of a core), and waited {:.2} s more for a core ({:.0}% wanted)",
                used.as_secs_f64(),
                elapsed.as_secs_f64(),
                share * 100.0,
                waited.as_secs_f64(),
                wanted * 100.0
            ),
        )
        .hint("the proxy busy-waits: it polls non-blocking sockets in a loop instead of waiting for readiness (select/poll/epoll, or blocking calls)")
        .into());
    }
    Ok(())
}
