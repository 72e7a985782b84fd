//! Shutdown: one direction ends while the other goes on (R5).

use tokio::io::AsyncWriteExt;

use crate::case::{Case, Level};
use crate::harness::{Ctx, PROMPT};
use crate::outcome::{Failure, Stop};
use tokio::net::TcpStream;

use crate::cases::bulk::BLOCKED_QUIET;
use crate::cases::echo::ALTERED_HINT;
use crate::cases::timeout::Side;
use crate::held::{Direction, FillError};
use crate::net::{
    expect_stream, mib, read_exact_within, show, wait_end, End, Ended, Mismatch, Progress,
};
use crate::rules::Rule;

pub static ONE_WAY: Case = Case {
    id: "shutdown/one-way",
    name: "One-way shutdown",
    requirement: "When the client shuts down its sending direction, the proxy MUST pass the EOF on to the server and keep forwarding the server's data to the client.",
    rules: &[Rule::R5],
    level: Level::Must,
    alone: false,
    assumes: "Each EOF and the server's bytes arrive within PROMPT (5 s). Once the server has read the EOF, the pair is left alone for 1 s before the server answers (the client's connection must stay open meanwhile), so that a proxy that closes both directions at the first EOF has closed by then, whatever order it closes its sockets in (socat, for one, closes them 0.5 s apart by default).",
    body: |cx| Box::pin(half_close(cx, Side::Client)),
};

pub static REVERSE: Case = Case {
    id: "shutdown/reverse",
    name: "Reverse one-way shutdown",
    requirement: "When the server shuts down its sending direction, the proxy MUST pass the EOF on to the client and keep forwarding the client's data to the server.",
    rules: &[Rule::R5],
    level: Level::Must,
    alone: false,
    assumes: "Each EOF and the client's bytes arrive within PROMPT (5 s). Once the client has read the EOF, the pair is left alone for 1 s before the client answers (the server's connection must stay open meanwhile), so that a proxy that closes both directions at the first EOF has closed by then, whatever order it closes its sockets in (socat, for one, closes them 0.5 s apart by default).",
    body: |cx| Box::pin(half_close(cx, Side::Server)),
};

pub static FLUSH: Case = Case {
    id: "shutdown/flush",
    name: "Shutdown after bulk data",
    requirement: "On EOF from one side, the proxy MUST first deliver every byte it still holds, and only then shut the other side down; from the client and from the server alike.",
    rules: &[Rule::R5, Rule::R1],
    level: Level::Must,
    alone: false,
    assumes: "No limit on the total time; a pause of PROMPT (5 s) without data fails. Filling the proxy while the receiver does not read can take longer than T on a loaded machine: a proxy whose clock runs from the connection's opening, or that times out an idle direction, may then fail (documented as timing-dependent for those fixtures).",
    body: |cx| Box::pin(flush(cx)),
};

/// Bytes written just before each shutdown in shutdown/flush: far more than socket buffers and
/// a proxy's own buffer hold at once, so some are always in flight at the EOF. Not a multiple of
/// any buffer size, so that the last read before the EOF is a short one.
const FLUSH_BYTES: usize = 4 * 1024 * 1024 + 1001;

/// How long shutdown/one-way and shutdown/reverse leave a half-closed pair alone before the
/// other peer answers: a proxy that closes both directions at the first EOF has closed by
/// then, however it orders its closes (see [`half_close`]). Not a window a correct proxy must
/// meet: it does nothing in it.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// shutdown/one-way (`closer` the client) and shutdown/reverse (the server): `closer` shuts
/// down its sending direction; the other peer must read EOF and nothing else, then still be
/// heard: it writes 1 KiB and shuts down, and `closer` must read exactly that, then EOF.
async fn half_close(mut cx: Ctx, closer: Side) -> Result<(), Stop> {
    let (client, server) = cx.open_pair().await?;
    let (mut closing, mut keeping) = match closer {
        Side::Client => (client, server),
        Side::Server => (server, client),
    };
    let (c, k) = (closer.name(), closer.other().name());
    closing.shutdown().await.map_err(|e| {
        Failure::new(
            format!("the {c} can shut down its sending direction"),
            format!("shutdown failed: {e}"),
        )
    })?;
    cx.trace
        .event(format!("{c} shut down its sending direction"));
    match wait_end(&mut keeping, PROMPT).await {
        Some(Ended { end: End::Eof, bytes: 0, .. }) => {}
        Some(ended) => {
            return Err(Failure::new(
                format!("the {k} reads EOF, and no data, after the {c}'s shutdown"),
                format!("the {k} read {} byte(s), then {}", ended.bytes, ended.end),
            )
            .hint("the proxy aborted the connection instead of passing the shutdown on")
            .into())
        }
        None => {
            return Err(Failure::new(
                format!("the {k} reads EOF within {} s of the {c}'s shutdown", PROMPT.as_secs()),
                format!("the {k} saw nothing: the proxy kept its connection to the {k} open for writing"),
            )
            .hint(format!("the proxy does not pass the {c}'s EOF on: on reading EOF from one socket it must call shutdown(SHUT_WR) on the other"))
            .into())
        }
    }
    let one_direction =
        "the proxy closed both directions on the first EOF instead of shutting down one";
    // A proxy that closes everything at the first EOF often passes it on first and closes the
    // rest a moment later (one socket after the other, or in another thread): answering at
    // once would race that close and pass such a proxy now and then. So the pair is left
    // alone for a moment, in which the closer's connection must stay open.
    if let Some(ended) = wait_end(&mut closing, SETTLE).await {
        return Err(Failure::new(
            format!("the {c}'s connection stays open after its shutdown, for the {k}'s data"),
            format!(
                "within {} ms of the {k} reading the EOF, the {c} read {} byte(s), then {}",
                SETTLE.as_millis(),
                ended.bytes,
                ended.end
            ),
        )
        .hint(one_direction)
        .into());
    }
    let message = cx.text(1024);
    keeping.write_all(&message).await.map_err(|e| {
        Failure::new(
            format!("the {k} can still write after the {c}'s shutdown"),
            format!("the write failed: {e}"),
        )
        .hint(one_direction)
    })?;
    keeping.shutdown().await.ok();
    cx.trace
        .event(format!("{k} read EOF, wrote 1 KiB and shut down"));
    expect_stream(&mut closing, &message, PROMPT)
        .await
        .map_err(|m| {
            // Bytes that arrive altered are a forwarding bug, not a shutdown bug.
            // The closer's connection stayed open through the settling moment, so an early
            // end here is the other peer's EOF passed on without the bytes that came with it.
            let hint = match m {
                Mismatch::Differs { .. } => ALTERED_HINT,
                Mismatch::Ended { .. } => "the proxy passed the EOF on without the bytes that came with it: on EOF it must first write out everything it read before it",
                _ => one_direction,
            };
            Failure::new(
                format!("the {c} receives the {k}'s 1 KiB sent after the {c}'s own shutdown"),
                m.to_string(),
            )
            .hint(hint)
        })?;
    match wait_end(&mut closing, PROMPT).await {
        Some(Ended {
            end: End::Eof,
            bytes: 0,
            ..
        }) => Ok(()),
        Some(ended) => Err(Failure::new(
            format!("after the {k}'s data, the {c} reads EOF"),
            format!("it read {} more byte(s), then {}", ended.bytes, ended.end),
        )
        .into()),
        None => Err(Failure::new(
            format!(
                "after the {k}'s data, the {c} reads EOF within {} s (the {k} shut down)",
                PROMPT.as_secs()
            ),
            "the connection stayed open",
        )
        .hint(format!(
            "the proxy does not pass the {k}'s EOF on to the {c}"
        ))
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

/// The EOF reaches the proxy while the proxy holds data of its own and the receiver is not
/// reading: the state in which a proxy with a user-space write buffer (asyncio transports, Go
/// bufio, Node streams) loses the tail if it shuts down without flushing.
///
/// The receiver reads nothing while the sender fills the proxy ([`Direction::fill`]); then
/// the sender shuts down, the proxy reads the EOF, and only then does the receiver read: it
/// must get every byte, then EOF. Where the kernel's socket queues cannot be read (not
/// Linux), this part is not checked and the trace says so.
async fn flush_while_held(
    cx: &Ctx,
    sender: TcpStream,
    mut receiver: TcpStream,
    data: Vec<u8>,
    from: &str,
    to: &str,
) -> Result<(), Failure> {
    let Some(direction) = Direction::between(&sender, &receiver) else {
        return Err(Failure::new(
            format!("the {from}'s and the {to}'s connections stay open"),
            "one of them was already closed",
        ));
    };
    let (_sender_rx, mut sender_tx) = sender.into_split();
    let mut offset = 0;
    let filling = direction
        .fill(&mut sender_tx, data.len(), |n| {
            let piece = data[offset..offset + n].to_vec();
            offset += n;
            piece
        })
        .await;
    let filled = match filling {
        Ok(filled) => filled,
        Err(FillError::Unobservable(reason)) => {
            cx.trace.event(format_args!(
                "{from} → {to}: cannot see where the data is ({reason}); the EOF-while-held check is left out"
            ));
            return Ok(());
        }
        Err(FillError::Closed { written }) => {
            return Err(Failure::new(
                format!("the connections stay open while the {from} writes"),
                format!(
                    "a socket of the pair was closed after {}",
                    mib(written as u64)
                ),
            )
            .hint("the proxy closed a connection that was only waiting for its reader"))
        }
        Err(FillError::Write { written, error }) => {
            return Err(Failure::new(
                format!("the {from} can write while the {to} does not read yet"),
                format!("the write failed after {}: {error}", mib(written as u64)),
            ))
        }
    };
    let _ = sender_tx.shutdown().await;
    direction.let_proxy_take_eof(&filled, BLOCKED_QUIET).await;
    let (written, held) = (filled.written, filled.held);
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
    expect_eof(&mut receiver, from, to).await
}

/// After the data, the receiver must read EOF and nothing more.
async fn expect_eof(receiver: &mut TcpStream, from: &str, to: &str) -> Result<(), Failure> {
    match wait_end(receiver, PROMPT).await {
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
        .hint(match m {
            Mismatch::Differs { .. } => ALTERED_HINT,
            _ => "the proxy passed the EOF on before delivering what it still held: on EOF it must flush its buffer first, then shut down",
        })
    })?;
    expect_eof(&mut receiver, from, to).await?;
    cx.trace.event(format_args!(
        "{from} → {to}: {} then EOF",
        mib(expected.len() as u64)
    ));
    Ok(())
}

pub static IDLE_HALF_CLOSED: Case = Case {
    id: "shutdown/idle-half-closed",
    name: "Half-closed, then idle",
    requirement: "A half-closed connection that holds no data MUST NOT be aborted, however long it is idle: after one side's EOF, the other direction MUST still carry data that comes later than the stall timeout, then its EOF.",
    rules: &[Rule::R7, Rule::R5],
    level: Level::Must,
    alone: false,
    assumes: "Quiet for 1.5 T after the EOF; then the data and the second EOF arrive within PROMPT (5 s).",
    body: |cx| Box::pin(idle_half_closed(cx)),
};

/// How long shutdown/idle-half-closed stays silent after the EOF, relative to T.
pub const HALF_CLOSED_IDLE: f64 = 1.5;

async fn idle_half_closed(mut cx: Ctx) -> Result<(), Stop> {
    // Both ways at once, each on a pair of its own: a "linger after FIN" timer may be kept per
    // direction.
    let (client, server) = cx.open_pair().await?;
    let (other_client, other_server) = cx.open_pair().await?;
    let late = (cx.text(8), cx.text(8));
    let (client_first, server_first) = tokio::join!(
        half_closed_then_idle(&cx, client, server, Side::Client, &late.0),
        half_closed_then_idle(&cx, other_server, other_client, Side::Server, &late.1),
    );
    client_first?;
    server_first?;
    Ok(())
}

/// `closer` shuts down its sending direction; once its peer has read the EOF, both stay quiet
/// for [`HALF_CLOSED_IDLE`] × T; then the peer writes `late` and closes, and the closer must
/// read `late` and EOF.
async fn half_closed_then_idle(
    cx: &Ctx,
    mut closer: TcpStream,
    mut peer: TcpStream,
    closer_side: Side,
    late: &[u8],
) -> Result<(), Failure> {
    let (c, p) = (closer_side.name(), closer_side.other().name());
    closer.shutdown().await.map_err(|e| {
        Failure::new(
            format!("the {c} can shut down its sending direction"),
            format!("shutdown failed: {e}"),
        )
    })?;
    match wait_end(&mut peer, PROMPT).await {
        Some(Ended {
            end: End::Eof,
            bytes: 0,
            ..
        }) => {}
        other => {
            return Err(Failure::new(
                format!("the {p} reads EOF, and no data, after the {c}'s shutdown"),
                match other {
                    Some(ended) => {
                        format!("the {p} read {} byte(s), then {}", ended.bytes, ended.end)
                    }
                    None => format!("the {p} saw nothing within {} s", PROMPT.as_secs()),
                },
            )
            .hint(
                "the proxy does not pass EOF on (shutdown/one-way and shutdown/reverse say more)",
            ))
        }
    }
    let idle = cx.stall.mul_f64(HALF_CLOSED_IDLE);
    cx.trace.event(format_args!(
        "{c} → {p} ended; the pair stays quiet for {:.1} s",
        idle.as_secs_f64()
    ));
    tokio::time::sleep(idle).await;
    let written = peer.write_all(late).await;
    drop(peer);
    let got = match written {
        Ok(()) => read_exact_within(&mut closer, late.len(), PROMPT)
            .await
            .map_err(|short| format!("the {c} received {short}")),
        Err(e) => Err(format!("the {p}'s write failed ({e})")),
    };
    let expected = format!(
        "a pair half-closed by the {c} and then quiet for {:.1} s (longer than the stall timeout) still carries the {p}'s data, then its EOF",
        idle.as_secs_f64()
    );
    let hint = "the proxy times out a half-closed pair that carries nothing (a \"linger after FIN\" timer): a pair that holds no data must never be aborted, half-closed or not";
    match got {
        Ok(got) if got == late => {}
        Ok(got) => {
            return Err(Failure::new(
                format!("the {c} receives {}", show(late)),
                format!("it received {}", show(&got)),
            ))
        }
        Err(observed) => return Err(Failure::new(expected, observed).hint(hint)),
    }
    match wait_end(&mut closer, PROMPT).await {
        Some(Ended { end: End::Eof, bytes: 0, .. }) => Ok(()),
        Some(ended) => Err(Failure::new(
            expected,
            format!("after the data, the {c} read {} more byte(s), then {}", ended.bytes, ended.end),
        )
        .hint(hint)),
        None => Err(Failure::new(
            expected,
            format!("after the data, the {c} saw no EOF within {} s of the {p} closing", PROMPT.as_secs()),
        )
        .hint("the proxy does not pass the second EOF on: once both directions have ended it must close the pair")),
    }
}
