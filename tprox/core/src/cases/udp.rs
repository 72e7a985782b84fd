//! The UDP catalogue (R16 to R19), run instead of the TCP one with `tprox --udp`: datagrams
//! whole and alone, a session per client, sessions' lifetime, and bounds.
//!
//! Loopback loses a datagram only where a socket's receive buffer is full, so every case that
//! judges delivery sends few datagrams at a time and waits for them, and a slow proxy is given
//! [`PROMPT`] for each; only `udp/flood` sends more than a buffer holds, and it judges memory,
//! not delivery.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::case::{Case, Level};
use crate::figure::Figure;
use crate::harness::{Ctx, PROMPT};
use crate::outcome::{Failure, Stop};
use crate::rules::Rule;
use crate::udp::{client, recv_within, DATAGRAM_MAX};

/// The sizes `udp/sizes` sends: the edges of empty and one byte, of the common MTU payloads,
/// of the receive buffers that forwarders get wrong (4 KiB, 8 KiB, 16 KiB), and the largest.
pub const SIZES: &[usize] = &[
    0,
    1,
    2,
    512,
    1472,
    1473,
    4095,
    4096,
    4097,
    8192,
    8193,
    16385,
    32768,
    DATAGRAM_MAX,
];

/// Clients at once in `udp/sessions`.
pub const CLIENTS: usize = 100;
/// Datagrams each client sends there.
pub const PER_CLIENT: usize = 3;
/// Clients that send at once before the case waits for their datagrams: few enough that no
/// socket buffer on the way overflows, whatever the proxy's speed.
const BURST: usize = 20;

/// Datagrams in `udp/flood`, and their size: 200 MB offered to a destination that does not
/// read, far more than any socket buffer holds.
pub const FLOOD_DATAGRAMS: usize = 200_000;
/// The size of each.
pub const FLOOD_SIZE: usize = 1_000;
/// How much the proxy's resident memory may grow meanwhile: as much as a TCP proxy's may with
/// blocked connections (`resources/memory`). Resident memory is summed over the proxy's
/// processes, so a forwarder that forks a process per session (socat) counts the pages its
/// processes share once per process: its flood costs it up to about 20 MiB; a queue without
/// bound (the `udp-unbounded-queue` fixture) holds whatever it could read of the 200 MB.
pub const FLOOD_BOUND: u64 = 32 * 1024 * 1024;
/// The flood stops after this long, whatever it has sent.
const FLOOD_TIME: Duration = Duration::from_secs(5);

pub static SIZES_CASE: Case = Case {
    id: "udp/sizes",
    name: "Datagrams of every size, whole and alone",
    requirement: "Each datagram MUST arrive whole and alone, both ways: every size from 0 bytes to 65,507, contents unchanged, never merged with another or split.",
    rules: &[Rule::R16],
    level: Level::Must,
    alone: false,
    assumes: "One datagram at a time, each within PROMPT (5 s) each way; then three sent at once, which must arrive as three.",
    body: |cx| Box::pin(sizes(cx)),
};

pub static SESSIONS: Case = Case {
    id: "udp/sessions",
    name: "100 clients, none crossed",
    requirement: "Each client address and port MUST be a session of its own, with its own socket towards the destination, and the destination's replies MUST go back to the client that asked and to no other.",
    rules: &[Rule::R17],
    level: Level::Must,
    alone: false,
    assumes: "100 clients send 3 datagrams each, interleaved, 20 clients at a time; each datagram reaches the destination, and each reply its client, within PROMPT (5 s).",
    body: |cx| Box::pin(sessions(cx)),
};

pub static REPLIES: Case = Case {
    id: "udp/replies",
    name: "Several replies, and a late one",
    requirement: "Every datagram the destination sends on a session's socket MUST reach the client while the session lives: three replies to one request, and one sent later, unasked.",
    rules: &[Rule::R17],
    level: Level::Must,
    alone: false,
    assumes: "The late reply comes 0.5 T after the request (at most 2 s), well inside the session's lifetime; each reply reaches the client within PROMPT (5 s).",
    body: |cx| Box::pin(replies(cx)),
};

pub static IDLE: Case = Case {
    id: "udp/idle-expiry",
    name: "Idle session dropped",
    requirement: "A session that carries nothing either way for the idle timeout T MUST be dropped and its socket closed, and the client's next datagram MUST open a new one; meanwhile the idle forwarder MUST use no CPU to speak of.",
    rules: &[Rule::R18, Rule::R19],
    level: Level::Must,
    alone: false,
    assumes: "The session's socket (known by the source port the destination saw) is closed between 0.5 T and 1.5 T + PROMPT after the last datagram. CPU time, not wall time, over 0.4 T (0.3-2 s) while idle: under 20 % of one core.",
    body: |cx| Box::pin(idle(cx)),
};

pub static ACTIVE: Case = Case {
    id: "udp/active-kept",
    name: "Active session kept",
    requirement: "A session that carries traffic more often than T, from either side, MUST NOT be dropped: the destination sees one source port throughout, and every datagram arrives.",
    rules: &[Rule::R18, Rule::R17],
    level: Level::Must,
    alone: false,
    assumes: "A datagram every T/4: from the client for 1.25 T, then from the destination alone for 2 T + 1 s (long enough that a session whose deadline only the client's datagrams move has expired, also with timers kept in whole seconds); each within PROMPT (5 s).",
    body: |cx| Box::pin(active(cx)),
};

pub static FLOOD: Case = Case {
    id: "udp/flood",
    name: "Flood to a destination that does not read",
    requirement: "A flood towards a destination that does not read MUST cost bounded memory: datagrams may be dropped, never queued without limit.",
    rules: &[Rule::R19],
    level: Level::Must,
    alone: true,
    assumes: "200,000 datagrams of 1,000 bytes as fast as one client sends them (at most 5 s); the proxy's resident memory, summed over its processes, grows by less than 32 MiB. Runs alone: the flood fills loopback's buffers.",
    body: |cx| Box::pin(flood(cx)),
};

pub static UNREACHABLE: Case = Case {
    id: "udp/unreachable",
    name: "ICMP port unreachable ends no other session",
    requirement: "An ICMP port unreachable on one session's socket MUST NOT end another session, nor stop the forwarder: the other session keeps its socket, and both are served once the destination listens again.",
    rules: &[Rule::R19],
    level: Level::Must,
    alone: false,
    assumes: "Each datagram, before the destination closes and after it opens again, arrives within PROMPT (5 s).",
    body: |cx| Box::pin(unreachable(cx)),
};

/// The destination's socket, or a skip: a case closed it and could not open it again.
/// Whatever is waiting at it is dropped: the case starts with nothing left from the checks.
fn destination(cx: &Ctx) -> Result<Arc<UdpSocket>, Stop> {
    let socket = cx
        .dest
        .udp()
        .and_then(|udp| udp.socket())
        .ok_or_else(|| Stop::Skip("the destination's UDP socket is not open".into()))?;
    crate::udp::drain(&socket);
    Ok(socket)
}

fn fresh_client_failure(e: std::io::Error) -> Stop {
    Stop::Skip(format!("cannot open a UDP client socket: {e}"))
}

/// The next datagram at `socket` within [`PROMPT`] that is not empty, and who sent it; if none
/// came, the failure of `expected`. Empty datagrams are passed over: no case but `udp/sizes`
/// sends one, and a forwarder that adds them (one at each session's start "to simulate a
/// connection", or one to the client as a session ends) fails `udp/sizes` for it, and no
/// other case.
async fn arrives(
    socket: &UdpSocket,
    expected: impl Into<String>,
) -> Result<(Vec<u8>, SocketAddr), Failure> {
    let deadline = tokio::time::Instant::now() + PROMPT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match recv_within(socket, left).await {
            Some((data, _)) if data.is_empty() => continue,
            Some(found) => return Ok(found),
            None => return Err(Failure::new(expected, nothing())),
        }
    }
}

/// As [`arrives`], for a case that judges what did come itself.
async fn next_datagram(socket: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    arrives(socket, String::new()).await.ok()
}

/// The next datagram at `socket` within [`PROMPT`] whatever it is, an empty one included.
async fn arrives_exactly(
    socket: &UdpSocket,
    expected: impl Into<String>,
) -> Result<(Vec<u8>, SocketAddr), Failure> {
    recv_within(socket, PROMPT)
        .await
        .ok_or_else(|| Failure::new(expected, nothing()))
}

/// What [`arrives`] saw when nothing came.
fn nothing() -> String {
    format!("nothing arrived within {} s", PROMPT.as_secs())
}

/// What a datagram that should have been `sent` looks like when `got` arrived instead.
fn mismatch(sent: &[u8], got: &[u8]) -> String {
    if got.is_empty() && !sent.is_empty() {
        format!(
            "an empty datagram arrived instead of the {} bytes sent",
            sent.len()
        )
    } else if got.len() < sent.len() && sent.starts_with(got) {
        format!(
            "{} bytes arrived, the first {} of the {} sent: truncated (a receive buffer of {} bytes?)",
            got.len(),
            got.len(),
            sent.len(),
            got.len()
        )
    } else if got.len() != sent.len() {
        format!("{} bytes arrived for {} sent", got.len(), sent.len())
    } else {
        let at = sent.iter().zip(got).position(|(a, b)| a != b).unwrap_or(0);
        format!(
            "{} bytes arrived, altered from offset {at} (sent {:#04x}, got {:#04x})",
            got.len(),
            sent[at],
            got[at]
        )
    }
}

async fn sizes(mut cx: Ctx) -> Result<(), Stop> {
    let server = destination(&cx)?;
    let client = client(cx.proxy_addr())
        .await
        .map_err(fresh_client_failure)?;
    // A new session's first datagram arrives alone: nothing before it.
    let first = cx.payload(100);
    let _ = client.send(&first).await;
    let (got, from) = arrives_exactly(
        &server,
        "the client's first datagram reaches the destination",
    )
    .await?;
    if got != first {
        return Err(Failure::new(
            "the first datagram of a new session arrives alone and unchanged: nothing the client did not send comes before it",
            mismatch(&first, &got),
        )
        .hint("send only what the client sent: no empty datagram to announce a session, and no other")
        .into());
    }
    let _ = server.send_to(&got, from).await;
    arrives_exactly(
        &client,
        "the destination's answer to the first datagram reaches the client",
    )
    .await?;
    for &size in SIZES {
        let ask = cx.payload(size);
        let _ = client.send(&ask).await;
        let (got, from) = arrives_exactly(&server, format!("a {size}-byte datagram from the client reaches the destination"))
        .await
        .map_err(|f| f.hint(if size > 8192 {
                "a receive buffer smaller than 65,507 bytes truncates large datagrams, or they are dropped"
            } else {
                "the proxy drops datagrams of this size"
            }))?;
        if got != ask {
            return Err(Failure::new(
                format!("the {size}-byte datagram arrives at the destination whole and unchanged"),
                mismatch(&ask, &got),
            )
            .hint("read each datagram with a buffer of 65,507 bytes or more, and send it with one call")
            .into());
        }
        let answer = cx.payload(size);
        let _ = server.send_to(&answer, from).await;
        let (back, _) = arrives_exactly(
            &client,
            format!("a {size}-byte answer from the destination reaches the client"),
        )
        .await?;
        if back != answer {
            return Err(Failure::new(
                format!("the {size}-byte answer arrives at the client whole and unchanged"),
                mismatch(&answer, &back),
            )
            .hint("read each reply with a buffer of 65,507 bytes or more")
            .into());
        }
    }
    cx.trace.event(format_args!(
        "{} sizes from 0 to {DATAGRAM_MAX} bytes, each way: whole and unchanged",
        SIZES.len()
    ));
    // Three at once: each must stay a datagram of its own.
    let three: Vec<Vec<u8>> = [100, 1, 300].iter().map(|&n| cx.payload(n)).collect();
    for datagram in &three {
        let _ = client.send(datagram).await;
    }
    let mut arrived = Vec::new();
    while arrived.len() < three.len() {
        match recv_within(&server, PROMPT).await {
            Some((got, _)) => arrived.push(got),
            None => break,
        }
    }
    let mut want = three.clone();
    want.sort();
    arrived.sort();
    if arrived != want {
        let sizes: Vec<usize> = arrived.iter().map(Vec::len).collect();
        return Err(Failure::new(
            "three datagrams of 100, 1 and 300 bytes sent at once arrive as three, unchanged",
            format!("the destination received datagrams of {sizes:?} bytes"),
        )
        .hint("forward each datagram with its own send: never join or split them")
        .into());
    }
    Ok(())
}

async fn sessions(mut cx: Ctx) -> Result<(), Stop> {
    let server = destination(&cx)?;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(
            client(cx.proxy_addr())
                .await
                .map_err(fresh_client_failure)?,
        );
    }
    // Which source address the destination saw for each client, and what came back to whom.
    let mut sources: HashMap<usize, BTreeSet<SocketAddr>> = HashMap::new();
    let tag = |client: usize, n: usize| format!("client {client:03} datagram {n}").into_bytes();
    let token = cx.text(8);
    for n in 0..PER_CLIENT {
        for burst in (0..CLIENTS).collect::<Vec<_>>().chunks(BURST) {
            for &i in burst {
                let mut datagram = tag(i, n);
                datagram.extend_from_slice(&token);
                let _ = clients[i].send(&datagram).await;
            }
            // Each is answered as it arrives, to the address it came from.
            let mut seen = 0;
            while seen < burst.len() {
                let Some((got, from)) = recv_within(&server, PROMPT).await else {
                    return Err(Failure::new(
                        format!("each of {} clients' datagrams reaches the destination", burst.len()),
                        format!(
                            "{seen} of a burst of {} arrived within {} s (datagram {n} of each client)",
                            burst.len(),
                            PROMPT.as_secs()
                        ),
                    )
                    .into());
                };
                let Some(client) = std::str::from_utf8(&got)
                    .ok()
                    .and_then(|text| text.strip_prefix("client "))
                    .and_then(|text| text.get(..3))
                    .and_then(|id| id.parse::<usize>().ok())
                else {
                    continue;
                };
                sources.entry(client).or_default().insert(from);
                let _ = server.send_to(&got, from).await;
                seen += 1;
            }
        }
    }
    // One source per client, a different one for each.
    let mut owner: HashMap<SocketAddr, usize> = HashMap::new();
    for (&client, seen) in &sources {
        if seen.len() > 1 {
            return Err(Failure::new(
                "all datagrams of one client reach the destination from one source (its session's socket)",
                format!("client {client}'s {PER_CLIENT} datagrams came from {} sources: {seen:?}", seen.len()),
            )
            .hint("keep one session per client address and port while it is active")
            .into());
        }
        for &from in seen {
            if let Some(other) = owner.insert(from, client) {
                return Err(Failure::new(
                    "each client's datagrams reach the destination from a source of their own (a socket per session)",
                    format!("clients {other} and {client} both came from {from}"),
                )
                .hint("open a socket towards the destination for each client: with one shared socket, the destination cannot tell clients apart and replies cannot be routed back")
                .into());
            }
        }
    }
    cx.trace.event(format_args!(
        "the destination saw {} clients from {} distinct sources",
        sources.len(),
        owner.len()
    ));
    // Every client gets its own replies back, and nothing else.
    for (i, socket) in clients.iter().enumerate() {
        let mut own = 0;
        while own < PER_CLIENT {
            let (got, _) = arrives(
                socket,
                format!("client {i} receives the {PER_CLIENT} replies to its datagrams (it received {own})"),
            )
            .await
            .map_err(|f| f.hint("send each reply to the client whose session's socket received it"))?;
            let mine = tag(i, 0);
            if got.get(..10) != mine.get(..10) {
                return Err(Failure::new(
                    format!("client {i} receives only replies to its own datagrams"),
                    format!(
                        "it received one meant for another client: {:?}",
                        String::from_utf8_lossy(&got[..got.len().min(24)])
                    ),
                )
                .hint("replies crossed: send each reply to the client of the session whose socket received it, not to the last client seen")
                .into());
            }
            own += 1;
        }
    }
    Ok(())
}

async fn replies(mut cx: Ctx) -> Result<(), Stop> {
    let server = destination(&cx)?;
    let client = client(cx.proxy_addr())
        .await
        .map_err(fresh_client_failure)?;
    let ask = cx.text(16);
    let _ = client.send(&ask).await;
    let (_, from) = arrives(&server, "the client's datagram reaches the destination").await?;
    let answers: Vec<Vec<u8>> = (0..3).map(|_| cx.text(24)).collect();
    for answer in &answers {
        let _ = server.send_to(answer, from).await;
    }
    for (n, answer) in answers.iter().enumerate() {
        match next_datagram(&client).await {
            Some((got, _)) if got == *answer => {}
            Some((got, _)) => {
                return Err(Failure::new(
                    format!("reply {} of 3 reaches the client unchanged", n + 1),
                    mismatch(answer, &got),
                )
                .into())
            }
            None => {
                return Err(Failure::new(
                    "three replies to one request all reach the client",
                    format!("{n} arrived within {} s", PROMPT.as_secs()),
                )
                .hint("keep relaying the session's replies: do not stop after the first")
                .into())
            }
        }
    }
    let later = cx.stall.mul_f64(0.5).min(Duration::from_secs(2));
    tokio::time::sleep(later).await;
    let unasked = cx.text(24);
    let _ = server.send_to(&unasked, from).await;
    match next_datagram(&client).await {
        Some((got, _)) if got == unasked => Ok(()),
        got => Err(Failure::new(
            format!(
                "a datagram the destination sends {:.1} s later, unasked, reaches the client",
                later.as_secs_f64()
            ),
            match got {
                Some((got, _)) => mismatch(&unasked, &got),
                None => nothing(),
            },
        )
        .hint("a session relays the destination's datagrams as long as it lives, not only answers to a request")
        .into()),
    }
}

/// Whether the session's socket, known by its port, is still open.
fn udp_port_open(port: u16) -> Result<bool, Stop> {
    crate::udp::port_bound(port).map_err(Stop::Skip)
}

async fn idle(mut cx: Ctx) -> Result<(), Stop> {
    let server = destination(&cx)?;
    let client = client(cx.proxy_addr())
        .await
        .map_err(fresh_client_failure)?;
    let ask = cx.text(16);
    let _ = client.send(&ask).await;
    let (_, from) = arrives(&server, "the client's datagram reaches the destination").await?;
    let _ = server.send_to(&ask, from).await;
    arrives(&client, "the destination's answer reaches the client").await?;
    let last = Instant::now();
    cx.trace.event(format_args!(
        "the session's socket towards the destination is {from}; idle from now"
    ));
    // While idle: CPU time over a window well inside the timeout.
    let window = cx
        .stall
        .mul_f64(0.4)
        .clamp(Duration::from_millis(300), Duration::from_secs(2));
    let start = crate::probe::sample(cx.proxy_pgid).map_err(Stop::Skip)?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let end = crate::probe::sample(cx.proxy_pgid).map_err(Stop::Skip)?;
    // Time runnable but waiting for a core counts too (as in `resources/cpu`): a loaded
    // machine does not hide a busy-waiting forwarder.
    let used = (end.cpu.saturating_sub(start.cpu) + end.waiting.saturating_sub(start.waiting))
        .as_secs_f64();
    let share = used / started.elapsed().as_secs_f64();
    let tick = 1.0 / procfs::ticks_per_second() as f64;
    cx.trace.figure(Figure::new(
        "CPU with an idle UDP session",
        "%",
        share * 100.0,
        2.0 * tick / started.elapsed().as_secs_f64() * 100.0,
    ));
    if used > crate::cases::resources::CPU_SHARE * started.elapsed().as_secs_f64() + 2.0 * tick {
        return Err(Failure::new(
            "an idle UDP forwarder uses no CPU to speak of (R19)",
            format!(
                "it used {:.0} % of a core over {:.1} s with one idle session",
                share * 100.0,
                started.elapsed().as_secs_f64()
            ),
        )
        .hint("wait for datagrams and for the next session's deadline in poll/epoll; never spin on a non-blocking socket")
        .into());
    }
    // The session's socket must close: between 0.5 T and 1.5 T + PROMPT after the last datagram.
    let earliest = cx.stall.mul_f64(0.5);
    let latest = cx.stall.mul_f64(1.5) + PROMPT;
    let closed_after = loop {
        if !udp_port_open(from.port())? {
            break last.elapsed();
        }
        if last.elapsed() > latest {
            return Err(Failure::new(
                format!(
                    "a session idle for T ({:.1} s) is dropped and its socket closed, within 1.5 T + {} s",
                    cx.stall.as_secs_f64(),
                    PROMPT.as_secs()
                ),
                format!(
                    "its socket ({from}, as the destination saw it) was still open {:.1} s after the last datagram",
                    last.elapsed().as_secs_f64()
                ),
            )
            .hint("give each session a deadline that its traffic moves, and close its socket when the deadline passes: sessions that are never dropped exhaust descriptors")
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    cx.trace.event(format_args!(
        "the session's socket closed {:.2} s after the last datagram (T = {:.1} s)",
        closed_after.as_secs_f64(),
        cx.stall.as_secs_f64()
    ));
    if closed_after < earliest {
        return Err(Failure::new(
            format!(
                "an idle session lives for about T ({:.1} s) at least half of it",
                cx.stall.as_secs_f64()
            ),
            format!(
                "its socket closed {:.2} s after the last datagram",
                closed_after.as_secs_f64()
            ),
        )
        .hint("the idle timeout is the stall timeout the forwarder is given ({stall_timeout})")
        .into());
    }
    // The next datagram opens a new session.
    let again = cx.text(16);
    let _ = client.send(&again).await;
    let (got, new_from) = arrives(&server, "after its session was dropped, the client's next datagram opens a new one and reaches the destination")
        .await
        .map_err(|f| f.hint("remove a dropped session from the table, so that the client's next datagram makes a new one"))?;
    if got != again {
        return Err(Failure::new(
            "the client's next datagram arrives unchanged",
            mismatch(&again, &got),
        )
        .into());
    }
    let _ = server.send_to(&again, new_from).await;
    arrives(&client, "the new session's answer reaches the client").await?;
    cx.trace.event(format_args!(
        "the next datagram came through a new session, from {new_from}"
    ));
    Ok(())
}

async fn active(mut cx: Ctx) -> Result<(), Stop> {
    let server = destination(&cx)?;
    let client = client(cx.proxy_addr())
        .await
        .map_err(fresh_client_failure)?;
    let every = cx.stall / 4;
    let phase = cx.stall.mul_f64(1.25);
    let mut source: Option<SocketAddr> = None;
    let started = Instant::now();
    // From the client, answered.
    while started.elapsed() < phase {
        let ask = cx.text(12);
        let _ = client.send(&ask).await;
        let Some((got, from)) = next_datagram(&server).await else {
            return Err(Failure::new(
                "every datagram of an active session reaches the destination",
                format!(
                    "one sent {:.1} s into the session did not arrive within {} s",
                    started.elapsed().as_secs_f64(),
                    PROMPT.as_secs()
                ),
            )
            .into());
        };
        if got != ask {
            return Err(
                Failure::new("the datagram arrives unchanged", mismatch(&ask, &got)).into(),
            );
        }
        if let Some(first) = source.filter(|&first| first != from) {
            return Err(expired_while_active(
                first,
                from,
                started.elapsed(),
                "the client",
            ));
        }
        source = Some(from);
        let _ = server.send_to(&got, from).await;
        arrives(
            &client,
            "every answer of an active session reaches the client",
        )
        .await?;
        tokio::time::sleep(every).await;
    }
    let Some(from) = source else {
        return Err(Stop::Skip("no datagram was sent: T is too small".into()));
    };
    // From the destination alone: its traffic keeps the session too.
    let second = Instant::now();
    // Longer than the first phase: a session that only the client's datagrams keep must be
    // seen to expire, whatever the granularity of the forwarder's timers.
    let destination_phase = cx.stall * 2 + Duration::from_secs(1);
    while second.elapsed() < destination_phase {
        let unasked = cx.text(12);
        let at = second.elapsed();
        let _ = server.send_to(&unasked, from).await;
        match next_datagram(&client).await {
            Some((got, _)) if got == unasked => {}
            _ => {
                return Err(Failure::new(
                    "a session whose destination sends every T/4 lives on, and every datagram reaches the client",
                    format!(
                        "a datagram sent {:.1} s after the client's last did not reach it within {} s",
                        at.as_secs_f64(),
                        PROMPT.as_secs()
                    ),
                )
                .hint("traffic either way keeps a session: move its deadline for the destination's datagrams too")
                .into())
            }
        }
        tokio::time::sleep(every).await;
    }
    // The client speaks again: still the same session.
    let last = cx.text(12);
    let _ = client.send(&last).await;
    match next_datagram(&server).await {
        Some((_, now)) if now == from => Ok(()),
        Some((_, now)) => Err(expired_while_active(
            from,
            now,
            started.elapsed(),
            "the destination",
        )),
        None => Err(Failure::new(
            "the client's datagram after the destination's reaches the destination",
            nothing(),
        )
        .into()),
    }
}

fn expired_while_active(first: SocketAddr, now: SocketAddr, at: Duration, sender: &str) -> Stop {
    Failure::new(
        format!("an active session keeps its socket: the destination sees one source while {sender} sends every T/4"),
        format!(
            "the source changed from {first} to {now} {:.1} s into the session",
            at.as_secs_f64()
        ),
    )
    .hint("measure a session's idle time from its last datagram, either way, not from when it was opened")
    .into()
}

async fn flood(mut cx: Ctx) -> Result<(), Stop> {
    // The destination does not read from here on: its buffer fills, and the rest is the
    // proxy's to drop.
    let _server = destination(&cx)?;
    let client = client(cx.proxy_addr())
        .await
        .map_err(fresh_client_failure)?;
    let before = crate::probe::sample(cx.proxy_pgid).map_err(Stop::Skip)?;
    let datagram = cx.payload(FLOOD_SIZE);
    let started = Instant::now();
    let mut sent = 0usize;
    while sent < FLOOD_DATAGRAMS && started.elapsed() < FLOOD_TIME {
        match client.send(&datagram).await {
            Ok(_) => sent += 1,
            // An ICMP error for an earlier datagram, or a full buffer: go on.
            Err(_) => tokio::task::yield_now().await,
        }
    }
    let took = started.elapsed();
    // Memory taken by a queue shows at once; a moment lets the proxy read what is buffered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = crate::probe::sample(cx.proxy_pgid).map_err(Stop::Skip)?;
    let growth = after.rss.saturating_sub(before.rss);
    let mib = |bytes: u64| format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0));
    cx.trace.event(format_args!(
        "{sent} datagrams of {FLOOD_SIZE} bytes sent in {:.2} s; resident memory {} → {}",
        took.as_secs_f64(),
        mib(before.rss),
        mib(after.rss)
    ));
    cx.trace.figure(Figure::new(
        "memory grown by a UDP flood",
        "MiB",
        growth as f64 / (1024.0 * 1024.0),
        1.0,
    ));
    if growth >= FLOOD_BOUND {
        return Err(Failure::new(
            format!(
                "a flood of {sent} datagrams to a destination that does not read grows the proxy's memory by less than {}",
                mib(FLOOD_BOUND)
            ),
            format!("it grew by {} ({} → {})", mib(growth), mib(before.rss), mib(after.rss)),
        )
        .hint("never queue datagrams without limit: send each at once, or drop it when it cannot be sent")
        .into());
    }
    Ok(())
}

async fn unreachable(mut cx: Ctx) -> Result<(), Stop> {
    let whole = cx.dest.clone();
    let Some(dest) = whole.udp() else {
        return Err(Stop::Skip("not a UDP run".into()));
    };
    let proxy = cx.proxy_addr();
    let (keeper, other) = match (client(proxy).await, client(proxy).await) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return Err(fresh_client_failure(e)),
    };
    // The keeper's session, open.
    let server = destination(&cx)?;
    let hello = cx.text(16);
    let _ = keeper.send(&hello).await;
    let (_, kept) = arrives(&server, "the client's datagram reaches the destination").await?;
    drop(server);
    // The destination goes away: the other client's datagrams meet port unreachable.
    dest.close();
    for _ in 0..3 {
        let _ = other.send(&cx.text(16)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    if let Err(e) = dest.reopen().await {
        return Err(Stop::Skip(format!(
            "the destination could not listen again: {e}"
        )));
    }
    cx.trace.event(
        "the destination was closed while another client sent 3 datagrams (ICMP port unreachable), then opened again",
    );
    let server = destination(&cx)?;
    let again = cx.text(16);
    let _ = keeper.send(&again).await;
    let (got, now) = arrives(&server, "after another session met ICMP port unreachable, the first client's datagrams still reach the destination")
        .await
        .map_err(|f| f.hint("an ECONNREFUSED from one session's socket belongs to that session: never end the others, nor the receiving loop, for it"))?;
    if got != again {
        return Err(Failure::new("the datagram arrives unchanged", mismatch(&again, &got)).into());
    }
    if now != kept {
        return Err(Failure::new(
            "the first client's session keeps its socket when another session meets ICMP port unreachable",
            format!("its datagrams came from {kept} before and from {now} after"),
        )
        .hint("an ECONNREFUSED from one session's socket belongs to that session: never end the others for it")
        .into());
    }
    // The client whose datagrams were refused is served again too.
    let later = cx.text(16);
    let _ = other.send(&later).await;
    match next_datagram(&server).await {
        Some((got, _)) if got == later => Ok(()),
        got => Err(Failure::new(
            "the client whose datagrams met ICMP port unreachable is served once the destination listens again",
            match got {
                Some((got, _)) => mismatch(&later, &got),
                None => nothing(),
            },
        )
        .hint("ECONNREFUSED on a UDP socket reports an earlier datagram's ICMP error: the socket goes on working")
        .into()),
    }
}
