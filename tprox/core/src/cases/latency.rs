//! Latency: small writes are forwarded at once, without Nagle or delayed-ACK stalls (R12).
//!
//! A request made of several small writes followed by a read is the pattern that Nagle's
//! algorithm and delayed ACKs turn into a stall of about 40 ms per round trip on Linux. The
//! case passes when the median round trip stays under [`MEDIAN_BOUND`].

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use crate::case::{Case, Level};
use crate::figure::Figure;
use crate::harness::{Ctx, PROMPT};
use crate::net::{read_exact_within, show};
use crate::outcome::{Failure, Stop};
use crate::rules::Rule;

pub const ROUNDS: usize = 40;
pub const MEDIAN_BOUND: Duration = Duration::from_millis(20);
const PIECE: usize = 20;
const REQUEST_PIECES: usize = 3;
const REQUEST_PIECE: [u8; PIECE] = [b'q'; PIECE];
const RESPONSE_PIECE: [u8; PIECE] = [b'r'; PIECE];
const RESPONSE_PIECES: usize = 2;

pub static SMALL_WRITES: Case = Case {
    id: "latency/small-writes",
    name: "Small writes without delay",
    requirement: "The proxy SHOULD forward each small write as soon as it reads it (TCP_NODELAY on both sockets), so request/response traffic made of small writes sees no Nagle or delayed-ACK stall.",
    rules: &[Rule::R12],
    level: Level::Should,
    alone: true,
    assumes: "Runs alone. The median of 40 round trips must stay under 20 ms: a Nagle and delayed-ACK stall costs about 40 ms each, a busy machine a few.",
    body: |cx| Box::pin(small_writes(cx)),
};

/// Takes `socket` out of Linux's quick-ACK mode, so that what it receives next is acknowledged
/// the ordinary way, with a delayed ACK. Linux acknowledges at once for a while after a
/// connection opens and whenever it guesses the exchange is not interactive, and which one a
/// round meets depends on timing: without this, a proxy with Nagle's algorithm on towards one
/// side passed in some runs and failed in others. TCP_QUICKACK is not permanent (tcp(7)), so
/// it is cleared after every read.
fn delay_acks(socket: &tokio::net::TcpStream) {
    let _ = socket2::SockRef::from(socket).set_tcp_quickack(false);
}

async fn small_writes(cx: Ctx) -> Result<(), Stop> {
    let (client, server) = cx.open_pair().await?;
    // Each piece is written only once the previous one has reached the other end, so the
    // proxy forwards the pieces one by one whatever the load on the machine: a proxy that
    // still has Nagle's algorithm on must then hold every piece after the first until the one
    // before is acknowledged, which the receiver's delayed ACK puts off. Without the wait, a
    // proxy scheduled late reads a whole request at once and Nagle never shows.
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let (request_piece_in, mut request_piece_seen) = tokio::sync::mpsc::unbounded_channel();
    let (response_piece_in, mut response_piece_seen) = tokio::sync::mpsc::unbounded_channel();
    let responder = tokio::spawn(async move {
        for _ in 0..ROUNDS {
            for _ in 0..REQUEST_PIECES {
                // The piece's content is checked too, so that a proxy that alters data fails
                // here every time rather than by the timing its garbage happens to cause.
                let read = read_exact_within(&mut server_rx, PIECE, PROMPT).await;
                delay_acks(server_rx.as_ref());
                let seen = match read {
                    Ok(piece) if piece == REQUEST_PIECE => Ok(()),
                    Ok(piece) => Err(format!(
                        "the server received {} instead of {}",
                        show(&piece),
                        show(&REQUEST_PIECE)
                    )),
                    Err(short) => Err(format!("the server received {short}")),
                };
                let stop = seen.is_err();
                let _ = request_piece_in.send(seen);
                if stop {
                    return;
                }
            }
            for piece in 0..RESPONSE_PIECES {
                if piece > 0 && timeout(PROMPT, response_piece_seen.recv()).await.is_err() {
                    return;
                }
                if server_tx.write_all(&RESPONSE_PIECE).await.is_err() {
                    return;
                }
            }
        }
        // Held open until the case ends (it aborts this task): an EOF right behind the last
        // piece would make this case depend on how the proxy handles an EOF that comes with
        // data (R5), which is the shutdown cases' business.
        std::future::pending::<()>().await;
        drop((server_rx, server_tx));
    });
    let mut rounds = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let started = Instant::now();
        let failed = |what: String| {
            Failure::new(
                "the client's request and the server's response go through piece by piece",
                format!("round {}: {what}", round + 1),
            )
        };
        for piece in 0..REQUEST_PIECES {
            client_tx
                .write_all(&REQUEST_PIECE)
                .await
                .map_err(|e| failed(format!("the client's write failed: {e}")))?;
            match timeout(PROMPT, request_piece_seen.recv()).await {
                Ok(Some(Ok(()))) => {}
                Ok(Some(Err(what))) => {
                    return Err(failed(format!("request piece {}: {what}", piece + 1)).into())
                }
                Ok(None) | Err(_) => {
                    return Err(failed(format!(
                        "request piece {} did not reach the server",
                        piece + 1
                    ))
                    .into())
                }
            }
        }
        for piece in 0..RESPONSE_PIECES {
            let got = read_exact_within(&mut client_rx, PIECE, PROMPT).await;
            delay_acks(client_rx.as_ref());
            let got = got.map_err(|short| {
                failed(format!("response piece {}: received {short}", piece + 1))
            })?;
            if got != RESPONSE_PIECE {
                return Err(failed(format!(
                    "response piece {}: the client received {} instead of {}",
                    piece + 1,
                    show(&got),
                    show(&RESPONSE_PIECE)
                ))
                .into());
            }
            let _ = response_piece_in.send(());
        }
        rounds.push(started.elapsed());
    }
    responder.abort();
    rounds.sort();
    let median = rounds[ROUNDS / 2];
    let worst = rounds[ROUNDS - 1];
    // The middle half of the rounds: how much a median of this many moves by itself.
    let spread = rounds[ROUNDS * 3 / 4].saturating_sub(rounds[ROUNDS / 4]);
    cx.trace.figure(Figure::new(
        "median round trip",
        "ms",
        median.as_secs_f64() * 1e3,
        spread.as_secs_f64() * 1e3,
    ));
    cx.trace.event(format_args!(
        "{ROUNDS} round trips: median {:.1} ms, worst {:.1} ms",
        median.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    ));
    if median >= MEDIAN_BOUND {
        return Err(Failure::new(
            format!(
                "request/response round trips made of {PIECE}-byte writes take under {} ms (median)",
                MEDIAN_BOUND.as_millis()
            ),
            format!("median {:.1} ms, worst {:.1} ms over {ROUNDS} rounds", median.as_secs_f64() * 1e3, worst.as_secs_f64() * 1e3),
        )
        .hint("Nagle's algorithm holds small writes back until the previous one is acknowledged: set TCP_NODELAY on both sockets")
        .into());
    }
    Ok(())
}
