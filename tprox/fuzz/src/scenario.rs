//! What `tprox fuzz` generates: a short program for both peers of a few connections, and the
//! proptest strategy that generates and shrinks it.
//!
//! A scenario is a list of steps, each done by one side (the client, or the destination
//! server) of one connection: write some bytes, pause, stop or resume reading, shut down its
//! sending direction, or reset the connection. A connection is opened by the first step that
//! names it, so a server may speak before its client does. Every step is valid in every state:
//! what makes no sense any more (a write after that side shut down, anything on a connection
//! after a reset) does nothing, so that shrinking may drop any step.

use std::fmt;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

/// Connections a scenario may use.
pub const CONNECTIONS: u8 = 3;
/// Most steps in a generated scenario.
pub const MAX_STEPS: usize = 12;

/// One peer of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Client,
    Server,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// One thing one side of one connection does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case")]
pub enum Step {
    /// Writes `len` bytes; `fill` seeds their values.
    Write {
        conn: u8,
        side: Side,
        len: u32,
        fill: u8,
    },
    /// The other side stops reading, and this side writes until the proxy holds data of this
    /// direction in its own memory (tprox watches the kernel's socket queues), at most 8 MiB:
    /// the state in which a proxy that does not flush before shutting down loses data.
    Fill { conn: u8, side: Side, fill: u8 },
    /// Waits before the next step (bounded in all by the executor, so that no pause comes
    /// near the stall timeout).
    Pause { ms: u16 },
    /// Stops reading: what arrives stays in the kernel and, beyond that, in the proxy.
    StopReading { conn: u8, side: Side },
    /// Reads again, as fast as data comes.
    ResumeReading { conn: u8, side: Side },
    /// Reads again, slowly: a little at a time, with pauses, so the proxy stays backlogged.
    Trickle { conn: u8, side: Side },
    /// Shuts down the sending direction (half-close) once its writes are done.
    Shutdown { conn: u8, side: Side },
    /// Aborts the connection with a reset once its writes are handed over.
    Reset { conn: u8, side: Side },
    /// UDP (`tprox fuzz --udp`): sends one datagram of `len` bytes: a client from its own
    /// socket (session `conn`), or the destination to session `conn`'s source, once it has
    /// seen one (before, the step does nothing). The other end must receive it whole before
    /// the next step.
    Datagram {
        conn: u8,
        side: Side,
        len: u32,
        fill: u8,
    },
}

impl Step {
    /// The TCP connection the step acts on, if any.
    pub fn conn(&self) -> Option<u8> {
        match self {
            Step::Pause { .. } | Step::Datagram { .. } => None,
            Step::Write { conn, .. }
            | Step::Fill { conn, .. }
            | Step::StopReading { conn, .. }
            | Step::ResumeReading { conn, .. }
            | Step::Trickle { conn, .. }
            | Step::Shutdown { conn, .. }
            | Step::Reset { conn, .. } => Some(*conn),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Write {
                conn,
                side,
                len,
                fill,
            } => {
                write!(
                    f,
                    "{} of connection {conn} writes {len} byte(s) (fill {fill})",
                    side.name()
                )
            }
            Step::Fill { conn, side, fill } => write!(
                f,
                "{} of connection {conn} writes, its peer not reading, until the proxy holds some of its data (fill {fill})",
                side.name()
            ),
            Step::Pause { ms } => write!(f, "pause {ms} ms"),
            Step::StopReading { conn, side } => {
                write!(f, "{} of connection {conn} stops reading", side.name())
            }
            Step::ResumeReading { conn, side } => {
                write!(f, "{} of connection {conn} reads again", side.name())
            }
            Step::Trickle { conn, side } => {
                write!(f, "{} of connection {conn} reads slowly", side.name())
            }
            Step::Shutdown { conn, side } => {
                write!(
                    f,
                    "{} of connection {conn} shuts down its sending direction",
                    side.name()
                )
            }
            Step::Reset { conn, side } => {
                write!(
                    f,
                    "{} of connection {conn} resets the connection",
                    side.name()
                )
            }
            Step::Datagram {
                conn,
                side: Side::Client,
                len,
                fill,
            } => write!(f, "client {conn} sends a datagram of {len} byte(s) (fill {fill})"),
            Step::Datagram {
                conn, len, fill, ..
            } => write!(
                f,
                "the destination sends session {conn} a datagram of {len} byte(s) (fill {fill})"
            ),
        }
    }
}

/// The bytes of a write step: a function of its length and fill, so that a saved scenario
/// replays exactly.
pub fn write_bytes(len: u32, fill: u8) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(u64::from(fill) << 32 | u64::from(len));
    let mut bytes = vec![0u8; len as usize];
    rng.fill(&mut bytes);
    bytes
}

/// A generated program for the peers of up to [`CONNECTIONS`] connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scenario {
    pub steps: Vec<Step>,
}

impl Scenario {
    /// Whether this is a UDP scenario (`tprox fuzz --udp`): one with datagram steps.
    pub fn is_udp(&self) -> bool {
        self.steps
            .iter()
            .any(|step| matches!(step, Step::Datagram { .. }))
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(f, "  {:>2}. {step}", i + 1)?;
        }
        Ok(())
    }
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Client), Just(Side::Server)]
}

/// Mostly the first connection, so that steps meet on one connection often; the others test
/// that connections stay apart.
fn conn() -> impl Strategy<Value = u8> {
    prop_oneof![6 => Just(0u8), 2 => Just(1u8), 1 => Just(CONNECTIONS - 1)]
}

/// Write sizes: mostly small, some around socket-buffer sizes, a few larger than everything
/// the kernel holds between a proxy and a reader that does not read (several MiB).
fn len() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => 1u32..64,
        3 => 64u32..70_000,
        1 => 70_000u32..6_000_000,
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (conn(), side(), len(), any::<u8>())
            .prop_map(|(conn, side, len, fill)| Step::Write { conn, side, len, fill }),
        1 => (conn(), side(), any::<u8>())
            .prop_map(|(conn, side, fill)| Step::Fill { conn, side, fill }),
        1 => (0u16..300).prop_map(|ms| Step::Pause { ms }),
        1 => (conn(), side()).prop_map(|(conn, side)| Step::StopReading { conn, side }),
        1 => (conn(), side()).prop_map(|(conn, side)| Step::ResumeReading { conn, side }),
        1 => (conn(), side()).prop_map(|(conn, side)| Step::Trickle { conn, side }),
        2 => (conn(), side()).prop_map(|(conn, side)| Step::Shutdown { conn, side }),
        1 => (conn(), side()).prop_map(|(conn, side)| Step::Reset { conn, side }),
    ]
}

/// Scenarios of 1 to [`MAX_STEPS`] steps. Proptest shrinks them by dropping steps, then by
/// simplifying each (smaller writes, lower connection numbers, shorter pauses).
pub fn scenario() -> impl Strategy<Value = Scenario> {
    proptest::collection::vec(step(), 1..=MAX_STEPS).prop_map(|steps| Scenario { steps })
}

/// Datagram sizes: every size from empty to the largest IPv4 payload, mostly small.
fn datagram_len() -> impl Strategy<Value = u32> {
    prop_oneof![
        1 => Just(0u32),
        4 => 1u32..64,
        3 => 64u32..1_500,
        2 => 1_500u32..9_000,
        1 => 9_000u32..=65_507,
    ]
}

fn udp_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (conn(), datagram_len(), any::<u8>()).prop_map(|(conn, len, fill)| Step::Datagram {
            conn,
            side: Side::Client,
            len,
            fill
        }),
        3 => (conn(), datagram_len(), any::<u8>()).prop_map(|(conn, len, fill)| Step::Datagram {
            conn,
            side: Side::Server,
            len,
            fill
        }),
        1 => (0u16..300).prop_map(|ms| Step::Pause { ms }),
    ]
}

/// UDP scenarios (`tprox fuzz --udp`) of 1 to [`MAX_STEPS`] steps: datagrams either way on up to
/// [`CONNECTIONS`] sessions, and pauses.
pub fn udp_scenario() -> impl Strategy<Value = Scenario> {
    proptest::collection::vec(udp_step(), 1..=MAX_STEPS).prop_map(|steps| Scenario { steps })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_survives_a_round_trip_through_json() {
        let scenario = Scenario {
            steps: vec![
                Step::Write {
                    conn: 1,
                    side: Side::Server,
                    len: 10,
                    fill: 3,
                },
                Step::Pause { ms: 5 },
                Step::Shutdown {
                    conn: 0,
                    side: Side::Client,
                },
            ],
        };
        let text = serde_json::to_string(&scenario).unwrap();
        assert!(text.contains("\"do\":\"shutdown\""), "{text}");
        assert_eq!(serde_json::from_str::<Scenario>(&text).unwrap(), scenario);
    }

    #[test]
    fn udp_scenarios_are_datagrams_and_pauses_and_say_so() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        for _ in 0..200 {
            let scenario = udp_scenario().new_tree(&mut runner).unwrap().current();
            assert!(scenario.steps.iter().all(
                |s| matches!(s, Step::Datagram { len, .. } if *len <= 65_507)
                    || matches!(s, Step::Pause { .. })
            ));
            let has_datagram = scenario
                .steps
                .iter()
                .any(|s| matches!(s, Step::Datagram { .. }));
            assert_eq!(scenario.is_udp(), has_datagram);
            assert!(scenario.steps.iter().all(|s| s.conn().is_none()));
            let text = serde_json::to_string(&scenario).unwrap();
            assert_eq!(serde_json::from_str::<Scenario>(&text).unwrap(), scenario);
        }
        let tcp = scenario().new_tree(&mut runner).unwrap().current();
        assert!(!tcp.is_udp());
    }

    #[test]
    fn write_bytes_are_the_same_every_time_and_differ_by_fill() {
        assert_eq!(write_bytes(100, 7), write_bytes(100, 7));
        assert_ne!(write_bytes(100, 7), write_bytes(100, 8));
        assert_eq!(write_bytes(5, 0).len(), 5);
    }
}
