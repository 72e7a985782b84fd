//! Latency: small writes are forwarded at once, without Nagle or delayed-ACK stalls (R12).
//!
//! A request made of several small writes followed by a read is the pattern that Nagle's
//! algorithm and delayed ACKs turn into a stall of about 40 ms per round trip on Linux. The
//! case passes when the median round trip stays under [`MEDIAN_BOUND`].

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::case::{Case, Failure, Level, Stop};
use crate::harness::{Ctx, PROMPT};
use crate::net::read_exact_within;
use crate::rules::Rule;

pub const ROUNDS: usize = 40;
pub const MEDIAN_BOUND: Duration = Duration::from_millis(20);
const PIECE: usize = 20;
const REQUEST_PIECES: usize = 3;
const RESPONSE_PIECES: usize = 2;

pub static SMALL_WRITES: Case = Case {
    id: "latency/small-writes",
    name: "Small writes without delay",
    requirement: "The proxy SHOULD forward each small write as soon as it reads it (TCP_NODELAY on both sockets), so request/response traffic made of small writes sees no Nagle or delayed-ACK stall.",
    rules: &[Rule::R12],
    level: Level::Should,
    alone: true,
    body: |cx| Box::pin(small_writes(cx)),
};

async fn small_writes(cx: Ctx) -> Result<(), Stop> {
    let (mut client, mut server) = cx.open_pair().await?;
    let responder = tokio::spawn(async move {
        for _ in 0..ROUNDS {
            if read_exact_within(&mut server, PIECE * REQUEST_PIECES, PROMPT)
                .await
                .is_err()
            {
                return;
            }
            for _ in 0..RESPONSE_PIECES {
                if server.write_all(&[b'r'; PIECE]).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut rounds = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..REQUEST_PIECES {
            client.write_all(&[b'q'; PIECE]).await.map_err(|e| {
                Failure::new(
                    "the client can write its request",
                    format!("round {}: {e}", round + 1),
                )
            })?;
        }
        read_exact_within(&mut client, PIECE * RESPONSE_PIECES, PROMPT)
            .await
            .map_err(|short| {
                Failure::new(
                    format!("round {}'s response arrives", round + 1),
                    format!("received {short}"),
                )
            })?;
        rounds.push(started.elapsed());
    }
    responder.abort();
    rounds.sort();
    let median = rounds[ROUNDS / 2];
    let worst = rounds[ROUNDS - 1];
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
