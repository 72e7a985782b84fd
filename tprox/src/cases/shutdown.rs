//! Shutdown: one direction ends while the other goes on (R5).

use tokio::io::AsyncWriteExt;

use crate::case::{Case, Failure, Level, Stop};
use crate::harness::{Ctx, PROMPT};
use tokio::net::TcpStream;

use crate::cases::bulk::BLOCKED_QUIET;
use crate::net::{expect_stream, mib, read_exact_within, show, wait_end, End, Ended, Progress};
use crate::probe::TcpTable;
use crate::rules::Rule;
use std::net::SocketAddr;

pub static ONE_WAY: Case = Case {
    id: "shutdown/one-way",
    name: "One-way shutdown",
    requirement: "When the client shuts down its sending direction, the proxy MUST pass the EOF on to the server and keep forwarding the server's data to the client.",
    rules: &[Rule::R5],
    level: Level::Must,
    alone: false,
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

pub static REVERSE: Case = Case {
    id: "shutdown/reverse",
    name: "Reverse one-way shutdown",
    requirement: "When the server shuts down its sending direction, the proxy MUST pass the EOF on to the client and keep forwarding the client's data to the server.",
    rules: &[Rule::R5],
    level: Level::Must,
    alone: false,
    body: |cx| Box::pin(reverse(cx)),
};

pub static FLUSH: Case = Case {
    id: "shutdown/flush",
    name: "Shutdown after bulk data",
    requirement: "On EOF from one side, the proxy MUST first deliver every byte it still holds, and only then shut the other side down; from the client and from the server alike.",
    rules: &[Rule::R5, Rule::R1],
    level: Level::Must,
    alone: false,
    body: |cx| Box::pin(flush(cx)),
};

/// Bytes written just before each shutdown in shutdown/flush: far more than socket buffers and
/// a proxy's own buffer hold at once, so some are always in flight at the EOF. Not a multiple of
/// any buffer size, so that the last read before the EOF is a short one.
const FLUSH_BYTES: usize = 4 * 1024 * 1024 + 1001;

async fn reverse(mut cx: Ctx) -> Result<(), Stop> {
    let (mut client, mut server) = cx.open_pair().await?;
    server.shutdown().await.map_err(|e| {
        Failure::new(
            "the server can shut down its sending direction",
            format!("shutdown failed: {e}"),
        )
    })?;
    cx.trace.event("server shut down its sending direction");
    match wait_end(&mut client, PROMPT).await {
        Some(Ended { end: End::Eof, bytes: 0, .. }) => {}
        Some(ended) => {
            return Err(Failure::new(
                "the client reads EOF, and no data, after the server's shutdown",
                format!("the client read {} byte(s), then {}", ended.bytes, ended.end),
            )
            .hint("the proxy aborted the connection instead of passing the shutdown on")
            .into())
        }
        None => {
            return Err(Failure::new(
                format!("the client reads EOF within {} s of the server's shutdown", PROMPT.as_secs()),
                "the client saw nothing: the proxy kept its connection to the client open for writing",
            )
            .hint("the proxy does not pass the server's EOF on: it must call shutdown(SHUT_WR) on the client's socket")
            .into())
        }
    }
    let message = cx.text(1024);
    client.write_all(&message).await.map_err(|e| {
        Failure::new(
            "the client can still write after the server's shutdown",
            format!("the write failed: {e}"),
        )
        .hint("the proxy closed both directions on the server's EOF instead of shutting down one")
    })?;
    client.shutdown().await.ok();
    cx.trace.event("client wrote 1 KiB and shut down");
    expect_stream(&mut server, &message, PROMPT)
        .await
        .map_err(|m| {
            Failure::new(
                "the server receives the client's 1 KiB sent after the server's own shutdown",
                m.to_string(),
            )
            .hint(
                "the proxy closed both directions on the server's EOF instead of shutting down one",
            )
        })?;
    match wait_end(&mut server, PROMPT).await {
        Some(Ended {
            end: End::Eof,
            bytes: 0,
            ..
        }) => Ok(()),
        other => Err(Failure::new(
            "after the client's data, the server reads EOF",
            match other {
                Some(ended) => format!("it read {} more byte(s), then {}", ended.bytes, ended.end),
                None => "the connection stayed open".into(),
            },
        )
        .into()),
    }
}

async fn flush(mut cx: Ctx) -> Result<(), Stop> {
    let upload = cx.payload(FLUSH_BYTES);
    let download = cx.payload(FLUSH_BYTES);
    let (client, server) = cx.open_pair().await?;
    flush_one_way(&cx, client, server, upload, "client", "server").await?;
    let (client, server) = cx.open_pair().await?;
    flush_one_way(&cx, server, client, download, "server", "client").await?;

    let upload = cx.payload(HELD_BYTES_MAX);
    let download = cx.payload(HELD_BYTES_MAX);
    let (client, server) = cx.open_pair().await?;
    flush_while_held(&cx, client, server, upload, "client", "server").await?;
    let (client, server) = cx.open_pair().await?;
    flush_while_held(&cx, server, client, download, "server", "client").await?;
    Ok(())
}

/// The most shutdown/flush writes while it waits for the proxy to hold data of its own: far
/// more than the kernel buffers between the proxy and a receiver that does not read.
const HELD_BYTES_MAX: usize = 32 * 1024 * 1024;

/// How long the proxy must keep holding data before shutdown/flush counts it as held, or not
/// read before it counts as no longer reading; and how long it gets to act on the EOF.
const HELD_SETTLE: std::time::Duration = std::time::Duration::from_millis(100);

/// What the sender writes at a time, at most, while shutdown/flush fills the proxy and the
/// proxy's socket towards the receiver is nearly full: well under the
/// smallest user-space buffer a proxy commonly has (64 KiB for asyncio's high-water mark), so
/// that the step that makes the proxy hold data does not also fill its buffer (a proxy with a
/// full buffer stops reading and would not see the EOF until the receiver reads).
const HELD_STEP: usize = 16 * 1024;

/// Where the bytes the sender wrote are, while the receiver reads nothing.
struct Whereabouts {
    /// Everything written so far has been read by the proxy (none waits in the sender's
    /// socket or in the proxy's receiving socket).
    taken_in: bool,
    /// Bytes the proxy has read but not yet written into its socket towards the receiver:
    /// they are in the proxy's own memory (its buffers, a pipe), where only the proxy can
    /// deliver them.
    held: u64,
    /// Room left in the proxy's socket towards the receiver, in the kernel's accounting.
    room: u64,
}

/// Locates the written bytes through the kernel's socket queues. `None` when a socket of
/// the pair is not listed (it was closed).
fn whereabouts(
    table: &TcpTable,
    sender: (SocketAddr, SocketAddr),
    receiver: (SocketAddr, SocketAddr),
    written: u64,
) -> Option<Whereabouts> {
    let (s_local, s_peer) = sender;
    let (r_local, r_peer) = receiver;
    let at_sender = table.queues(s_local, s_peer)?;
    let proxy_in = table.queues(s_peer, s_local)?;
    let proxy_out = table.queues(r_peer, r_local)?;
    let at_receiver = table.queues(r_local, r_peer)?;
    let in_kernel = at_sender.send + proxy_in.receive + proxy_out.send + at_receiver.receive;
    Some(Whereabouts {
        taken_in: at_sender.send == 0 && proxy_in.receive == 0,
        held: written.saturating_sub(in_kernel),
        room: proxy_out.send_room,
    })
}

/// The EOF reaches the proxy while the proxy holds data of its own and the receiver is not
/// reading: the state in which a proxy with a user-space write buffer (asyncio transports, Go
/// bufio, Node streams) loses the tail if it shuts down without flushing.
///
/// The receiver reads nothing at first. The sender writes a step at a time, and after each
/// step tprox watches the kernel's socket queues (`/proc/net/tcp`) until the proxy has read
/// the step; once the bytes the proxy has read exceed what the kernel holds between the proxy
/// and the receiver, the rest is in the proxy's own memory. Then the sender shuts down, the
/// proxy reads the EOF, and only then does the receiver read: it must get every byte, then
/// EOF. Where `/proc/net/tcp` cannot be read, this part is not checked and the trace says so.
async fn flush_while_held(
    cx: &Ctx,
    sender: TcpStream,
    mut receiver: TcpStream,
    data: Vec<u8>,
    from: &str,
    to: &str,
) -> Result<(), Failure> {
    let ends = |s: &TcpStream| Some((s.local_addr().ok()?, s.peer_addr().ok()?));
    let (Some(sender_ends), Some(receiver_ends)) = (ends(&sender), ends(&receiver)) else {
        return Err(Failure::new(
            format!("the {from}'s and the {to}'s connections stay open"),
            "one of them was already closed",
        ));
    };
    let sockets = [
        sender_ends,
        (sender_ends.1, sender_ends.0),
        receiver_ends,
        (receiver_ends.1, receiver_ends.0),
    ];
    // Four netlink round trips of a few microseconds each: no need to leave the runtime.
    let locate = |written: usize| async move {
        let table = TcpTable::read(&sockets)?;
        Ok::<_, String>(whereabouts(
            &table,
            sender_ends,
            receiver_ends,
            written as u64,
        ))
    };
    let (_sender_rx, mut sender_tx) = sender.into_split();
    let mut written = 0;
    let mut held = 0;
    let mut proxy_stopped_reading = false;
    let mut step_size = HELD_STEP;
    while written < data.len() && held == 0 && !proxy_stopped_reading {
        let step = &data[written..(written + step_size).min(data.len())];
        if let Err(e) = sender_tx.write_all(step).await {
            return Err(Failure::new(
                format!("the {from} can write while the {to} does not read yet"),
                format!("the write failed after {}: {e}", mib(written as u64)),
            ));
        }
        written += step.len();
        let quiet = tokio::time::Instant::now() + HELD_SETTLE;
        let mut looks = 0;
        loop {
            looks += 1;
            match locate(written).await {
                Err(reason) => {
                    cx.trace.event(format_args!(
                        "{from} → {to}: cannot see where the data is ({reason}); the EOF-while-held check is left out"
                    ));
                    return Ok(());
                }
                Ok(None) => {
                    return Err(Failure::new(
                        format!("the connections stay open while the {from} writes"),
                        format!(
                            "a socket of the pair was closed after {}",
                            mib(written as u64)
                        ),
                    )
                    .hint("the proxy closed a connection that was only waiting for its reader"))
                }
                Ok(Some(now)) if now.taken_in => {
                    if now.held > 0 {
                        // A proxy caught between its read and its write holds data for a
                        // moment too: count only what it still holds a while later, when it
                        // has had every chance to write it.
                        tokio::time::sleep(HELD_SETTLE).await;
                        if let Ok(Some(later)) = locate(written).await {
                            held = later.held;
                        }
                    }
                    // Steps of half the room left: few while the proxy's socket has room,
                    // and small ones as it fills.
                    step_size = (now.room as usize / 2).clamp(HELD_STEP, 1024 * 1024);
                    break;
                }
                Ok(Some(now)) if tokio::time::Instant::now() >= quiet => {
                    // The proxy stopped reading: whatever it holds, it holds now.
                    held = now.held;
                    proxy_stopped_reading = true;
                    break;
                }
                // A proxy takes a step in well under a millisecond: look again at once a few
                // times before sleeping, as there are hundreds of steps.
                Ok(Some(_)) if looks < 20 => tokio::task::yield_now().await,
                Ok(Some(_)) => tokio::time::sleep(std::time::Duration::from_millis(1)).await,
            }
        }
    }
    let _ = sender_tx.shutdown().await;
    // Give the proxy the EOF: wait until it has read everything (the FIN included), then a
    // moment to act on it. A proxy that reads nothing more while its write is pending (as the
    // reference does) reads the EOF only once the receiver reads, which is fine too.
    let deadline = tokio::time::Instant::now() + BLOCKED_QUIET;
    while !proxy_stopped_reading && tokio::time::Instant::now() < deadline {
        match locate(written).await {
            Ok(Some(now)) if !now.taken_in => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await
            }
            _ => break,
        }
    }
    tokio::time::sleep(HELD_SETTLE).await;
    cx.trace.event(format_args!(
        "{from} wrote {} and shut down while the {to} read nothing; the proxy held {held} byte(s) of it in its own memory",
        mib(written as u64),
    ));
    let expected = &data[..written];
    expect_stream(&mut receiver, expected, PROMPT).await.map_err(|m| {
        Failure::new(
            format!(
                "the {to} receives all {} the {from} wrote before shutting down, then EOF, although the {to} was not reading when the EOF reached the proxy",
                mib(written as u64)
            ),
            format!("{m} (the proxy held {held} byte(s) in its own memory when the EOF came)"),
        )
        .hint("the proxy shut the socket down while its own write buffer still held data: on EOF it must first write out what it holds (asyncio: transport.write_eof(), not sock.shutdown())")
    })?;
    drop(sender_tx);
    match wait_end(&mut receiver, PROMPT).await {
        Some(Ended {
            end: End::Eof,
            bytes: 0,
            ..
        }) => Ok(()),
        other => Err(Failure::new(
            format!("after the {from}'s data, the {to} reads EOF"),
            match other {
                Some(ended) => format!("it read {} more byte(s), then {}", ended.bytes, ended.end),
                None => "the connection stayed open".into(),
            },
        )
        .hint("the proxy does not pass EOF on")),
    }
}

/// `sender` writes `data` and shuts down at once; `receiver` must get every byte, then EOF.
///
/// The receiver starts reading only once the sender has shut down, or has been blocked for a
/// moment with every buffer full: either way the proxy holds data when the EOF reaches it,
/// which is the situation this case is about.
async fn flush_one_way(
    cx: &Ctx,
    sender: TcpStream,
    mut receiver: TcpStream,
    data: Vec<u8>,
    from: &str,
    to: &str,
) -> Result<(), Failure> {
    let expected = data.clone();
    let (_sender_rx, mut sender_tx) = sender.into_split();
    let progress = Progress::new();
    let sent = progress.clone();
    let writer = tokio::spawn(async move {
        for chunk in data.chunks(64 * 1024) {
            if sender_tx.write_all(chunk).await.is_err() {
                return sender_tx;
            }
            sent.record(chunk.len());
        }
        let _ = sender_tx.shutdown().await;
        sender_tx
    });
    let reading_may_start = |writer: &tokio::task::JoinHandle<_>| {
        writer.is_finished() || (progress.bytes() > 0 && progress.last().elapsed() >= BLOCKED_QUIET)
    };
    while !reading_may_start(&writer) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    cx.trace.event(format_args!(
        "{to} starts reading; the {from} has written {}{}",
        mib(progress.bytes()),
        if writer.is_finished() {
            " and shut down"
        } else {
            " and is blocked"
        }
    ));
    let result = expect_stream(&mut receiver, &expected, PROMPT).await;
    writer.abort();
    result.map_err(|m| {
        Failure::new(
            format!("the {to} receives all {} the {from} wrote before shutting down, then EOF", mib(expected.len() as u64)),
            m.to_string(),
        )
        .hint("the proxy passed the EOF on before delivering what it still held: on EOF it must flush its buffer first, then shut down")
    })?;
    match wait_end(&mut receiver, PROMPT).await {
        Some(Ended {
            end: End::Eof,
            bytes: 0,
            ..
        }) => {
            cx.trace.event(format_args!(
                "{from} → {to}: {} then EOF",
                mib(expected.len() as u64)
            ));
            Ok(())
        }
        other => Err(Failure::new(
            format!("after the {from}'s data, the {to} reads EOF"),
            match other {
                Some(ended) => format!("it read {} more byte(s), then {}", ended.bytes, ended.end),
                None => "the connection stayed open".into(),
            },
        )
        .hint("the proxy does not pass EOF on")),
    }
}
