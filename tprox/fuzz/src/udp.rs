//! Playing a UDP scenario (`tprox fuzz --udp`) against a running forwarder, and judging it.
//!
//! The steps are datagrams, one at a time: a client sends one from its own socket (its own
//! session), or the destination sends one to a session's source; each must arrive whole at
//! the other end before the next step, so that no socket buffer on the way can fill and a
//! missing datagram is the forwarder's. The oracle, by the UDP rules:
//!
//! * R16: every datagram arrives whole and alone, contents unchanged, each size from 0 to
//!   65,507 bytes;
//! * R17: each session reaches the destination from one source of its own for the whole
//!   scenario (its pauses stay far from the idle timeout), and the destination's datagrams
//!   for a session reach that session's client and no other.
//!
//! As in the catalogue, an empty datagram that nobody sent (rinetd opens each session with
//! one) is passed over where another is awaited: `udp/sizes` is where adding one is judged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::execute::{Violation, FUZZ_PROMPT};
use super::scenario::{write_bytes, Scenario, Side, Step};
use tprox_core::harness::Destination;
use tprox_core::rules::Rule;
use tprox_core::udp;

/// A scenario's pauses add up to at most this share of the idle timeout: a correct forwarder
/// never drops a session during one (R18 lets it only after T idle).
const PAUSE_SHARE: f64 = 0.2;

/// How long the oracle watches, at the end, for a datagram that must not come.
const GRACE: Duration = Duration::from_millis(50);

/// Plays `scenario` through the UDP forwarder at `proxy`, whose destination is `dest`, and
/// judges it. `idle` is the forwarder's idle timeout T.
pub async fn execute(
    scenario: &Scenario,
    proxy: SocketAddr,
    dest: &Destination,
    idle: Duration,
) -> Result<(), Violation> {
    let server = dest
        .udp()
        .and_then(|d| d.socket())
        .ok_or_else(|| Violation {
            rule: Rule::R16,
            conn: 0,
            expected: "the destination's UDP socket is open".into(),
            observed: "it is closed (tprox's own state: run tprox fuzz with --udp)".into(),
        })?;
    udp::drain(&server);
    let mut clients: BTreeMap<u8, UdpSocket> = BTreeMap::new();
    // Each session's source as the destination saw it.
    let mut sources: BTreeMap<u8, SocketAddr> = BTreeMap::new();
    let mut pause_budget = idle.mul_f64(PAUSE_SHARE);
    for step in &scenario.steps {
        match step {
            Step::Pause { ms } => {
                let pause = Duration::from_millis(u64::from(*ms)).min(pause_budget);
                pause_budget -= pause;
                tokio::time::sleep(pause).await;
            }
            Step::Datagram {
                conn,
                side: Side::Client,
                len,
                fill,
            } => {
                let client = match clients.entry(*conn) {
                    std::collections::btree_map::Entry::Occupied(slot) => slot.into_mut(),
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(udp::client(proxy).await.map_err(|e| Violation {
                            rule: Rule::R16,
                            conn: *conn,
                            expected: "a client socket of tprox's".into(),
                            observed: format!("tprox could not open one: {e}"),
                        })?)
                    }
                };
                let data = write_bytes(*len, *fill);
                let _ = client.send(&data).await;
                let (got, from) = awaited(&server, &data).await.ok_or_else(|| Violation {
                    rule: Rule::R16,
                    conn: *conn,
                    expected: format!(
                        "the destination receives client {conn}'s datagram of {len} byte(s)"
                    ),
                    observed: format!("nothing arrived within {} s", FUZZ_PROMPT.as_secs()),
                })?;
                same(&got, &data, *conn, "the destination")?;
                match sources.get(conn) {
                    Some(source) if *source != from => {
                        return Err(Violation {
                            rule: Rule::R17,
                            conn: *conn,
                            expected: format!(
                                "session {conn}'s datagrams all come from one source ({source}), \
                                 its pauses far from the idle timeout"
                            ),
                            observed: format!(
                                "this one came from {from}: the session was given another socket"
                            ),
                        });
                    }
                    Some(_) => {}
                    None => {
                        if let Some((other, _)) = sources.iter().find(|(_, s)| **s == from) {
                            return Err(Violation {
                                rule: Rule::R17,
                                conn: *conn,
                                expected: format!(
                                    "session {conn} reaches the destination from a source of its own"
                                ),
                                observed: format!(
                                    "it came from {from}, session {other}'s source: the \
                                     destination's replies to either would go to one client"
                                ),
                            });
                        }
                        sources.insert(*conn, from);
                    }
                }
            }
            Step::Datagram {
                conn, len, fill, ..
            } => {
                // The destination can answer a session only once it has heard from it.
                let (Some(source), Some(client)) = (sources.get(conn), clients.get(conn)) else {
                    continue;
                };
                let data = write_bytes(*len, *fill);
                let _ = server.send_to(&data, source).await;
                let (got, _) = awaited(client, &data).await.ok_or_else(|| Violation {
                    rule: Rule::R17,
                    conn: *conn,
                    expected: format!(
                        "client {conn} receives the destination's datagram of {len} byte(s), \
                         sent to its session's source {source}"
                    ),
                    observed: format!("nothing arrived within {} s", FUZZ_PROMPT.as_secs()),
                })?;
                same(&got, &data, *conn, &format!("client {conn}"))?;
            }
            // Connection steps mean nothing over UDP.
            _ => {}
        }
    }
    tokio::time::sleep(GRACE).await;
    for (conn, client) in &clients {
        if let Some(extra) = stray(client).await {
            return Err(Violation {
                rule: Rule::R17,
                conn: *conn,
                expected: format!("client {conn} receives only what was sent to its session"),
                observed: format!("another datagram of {} byte(s) came", extra.len()),
            });
        }
    }
    if let Some(extra) = stray(&server).await {
        return Err(Violation {
            rule: Rule::R16,
            conn: 0,
            expected: "the destination receives each client datagram once, whole".into(),
            observed: format!(
                "another datagram of {} byte(s) came: a datagram split, or sent twice",
                extra.len()
            ),
        });
    }
    Ok(())
}

/// The next datagram at `socket` within the fuzz's prompt, passing over empty datagrams when
/// `expected` is not one (a forwarder's own; see the module's documentation).
async fn awaited(socket: &UdpSocket, expected: &[u8]) -> Option<(Vec<u8>, SocketAddr)> {
    let deadline = tokio::time::Instant::now() + FUZZ_PROMPT;
    loop {
        let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
        let (data, from) = udp::recv_within(socket, left).await?;
        if !data.is_empty() || expected.is_empty() {
            return Some((data, from));
        }
    }
}

/// A datagram waiting at `socket` now, other than an empty one.
async fn stray(socket: &UdpSocket) -> Option<Vec<u8>> {
    loop {
        let (data, _) = udp::recv_within(socket, Duration::from_millis(1)).await?;
        if !data.is_empty() {
            return Some(data);
        }
    }
}

/// R16: `got` is `sent`, whole.
fn same(got: &[u8], sent: &[u8], conn: u8, at: &str) -> Result<(), Violation> {
    if got == sent {
        return Ok(());
    }
    let how = if got.len() < sent.len() && sent.starts_with(got) {
        "cut short"
    } else if got.len() > sent.len() && got.starts_with(sent) {
        "with more behind it (merged with another?)"
    } else {
        "other bytes"
    };
    Err(Violation {
        rule: Rule::R16,
        conn,
        expected: format!(
            "{at} receives the datagram of {} byte(s) as sent",
            sent.len()
        ),
        observed: format!("{} byte(s) arrived: {how}", got.len()),
    })
}
