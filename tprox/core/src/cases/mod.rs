//! The case catalogue, one module per group; `docs/contract.md` is generated from it.

pub(crate) mod bulk;
mod close;
mod concurrency;
mod connect;
mod data;
mod echo;
mod front;
mod latency;
mod proxy_protocol;
pub(crate) mod resources;
pub(crate) mod shutdown;
mod silent;
pub(crate) mod timeout;
pub(crate) mod udp;

use crate::case::Case;

/// Every case, in catalogue order (the order of human output): the ten phases of the original
/// tester, the rest of the contract's catalogue, then cases for clauses the catalogue leaves
/// unchecked.
pub static CATALOGUE: &[&Case] = &[
    &echo::SINGLE,
    &echo::CHAIN_2,
    &echo::CHAIN_20,
    &bulk::CHAIN_20,
    &bulk::BLOCKED_MIX,
    &shutdown::ONE_WAY,
    &close::EARLY,
    &timeout::ACTIVE,
    &timeout::LAZY_FORWARD,
    &timeout::LAZY_REVERSE,
    // The rest of the catalogue of the contract.
    &shutdown::REVERSE,
    &shutdown::FLUSH,
    &bulk::DUPLEX,
    &data::BINARY,
    &connect::SERVER_FIRST,
    &connect::REFUSED,
    &close::RESET_SERVER,
    &close::RESET_CLIENT,
    &concurrency::MANY,
    &resources::FDS,
    &resources::MEMORY,
    &resources::CPU,
    &latency::SMALL_WRITES,
    // Clauses of the rules that the rows above leave unchecked.
    &bulk::BLOCKED_DOWNLOAD,
    &timeout::IDLE,
    &timeout::SLOW_READER,
    &close::WRITE_AFTER_CLOSE,
    &resources::FDS_ERRORS,
    &shutdown::IDLE_HALF_CLOSED,
];

/// The cases of a front's handshake (R13), run only against a SOCKS5 or HTTP CONNECT proxy
/// (`--front`), after the whole [`CATALOGUE`] run through the handshake.
pub static FRONT_CASES: &[&Case] = &[
    &front::REFUSED,
    &front::UNANSWERED_DIAL,
    &front::BAD_CREDENTIALS,
    &front::UNSUPPORTED_COMMAND,
    &front::SPLIT,
    &front::EARLY_DATA,
    &front::ADDRESS_TYPES,
    &front::BOUND_ADDRESS,
    &front::MALFORMED,
    &front::MID_HANDSHAKE,
];

/// The cases of a proxy that sends the PROXY protocol (R14), run only with
/// `--proxy-protocol send:VERSION`, after the [`CATALOGUE`] run on the stream behind the headers.
pub static PROXY_PROTOCOL_CASES: &[&Case] = &[&proxy_protocol::HEADER, &proxy_protocol::ADDRESSES];

/// The cases of a proxy that accepts the PROXY protocol (R15), run only with
/// `--proxy-protocol accept:VERSION`, after the [`CATALOGUE`] run with a header on every client.
pub static PROXY_PROTOCOL_ACCEPT_CASES: &[&Case] = &[
    &proxy_protocol::SPLIT_HEADER,
    &proxy_protocol::REFUSALS,
    &proxy_protocol::HEADER_TIMEOUT,
    &proxy_protocol::LOCAL,
    &proxy_protocol::NOT_FORWARDED,
];

/// The UDP catalogue (R16 to R19): a UDP forwarder's cases, run instead of the [`CATALOGUE`]
/// with `--udp`.
pub static UDP_CATALOGUE: &[&Case] = &[
    &udp::SIZES_CASE,
    &udp::SESSIONS,
    &udp::REPLIES,
    &udp::IDLE,
    &udp::ACTIVE,
    &udp::FLOOD,
    &udp::UNREACHABLE,
];

/// The cases that apply to a run: the catalogue, and the cases of the run's modes (a front's
/// handshake cases, a PROXY protocol sender's or receiver's header cases), or for a UDP
/// forwarder the UDP catalogue. The one place that decides it:
/// every front end (the command, the matrix, grading, the suite) asks here, through
/// [`crate::RunOptions::cases`] where it has a run's options, so that a new mode adds its cases
/// here alone.
pub fn applicable(
    front: Option<&crate::front::Front>,
    proxy_protocol: Option<crate::proxy_protocol::Mode>,
    udp: bool,
) -> Vec<&'static Case> {
    // A UDP forwarder has no stream, handshake or header: its own catalogue, and only it.
    if udp {
        return UDP_CATALOGUE.to_vec();
    }
    let mut cases = CATALOGUE.to_vec();
    if front.is_some() {
        cases.extend_from_slice(FRONT_CASES);
    }
    if proxy_protocol.is_some_and(|mode| mode.send.is_some()) {
        cases.extend_from_slice(PROXY_PROTOCOL_CASES);
    }
    if proxy_protocol.is_some_and(|mode| mode.accept.is_some()) {
        cases.extend_from_slice(PROXY_PROTOCOL_ACCEPT_CASES);
    }
    cases
}

/// Every case of every mode, in the order runs report them: for listings, the contract, and
/// checking that an id names a case at all.
pub fn all() -> Vec<&'static Case> {
    CATALOGUE
        .iter()
        .chain(FRONT_CASES)
        .chain(PROXY_PROTOCOL_CASES)
        .chain(PROXY_PROTOCOL_ACCEPT_CASES)
        .chain(UDP_CATALOGUE)
        .copied()
        .collect()
}

/// Looks a case up by its exact id, front cases included.
pub fn find(id: &str) -> Option<&'static Case> {
    all().into_iter().find(|case| case.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::Level;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_hierarchical() {
        let mut seen = HashSet::new();
        for case in all() {
            assert!(seen.insert(case.id), "duplicate id {}", case.id);
            let (group, name) = case.id.split_once('/').expect("ids are group/name");
            assert!(!group.is_empty() && !name.is_empty(), "{}", case.id);
            assert_eq!(find(case.id).map(|c| c.id), Some(case.id));
        }
    }

    #[test]
    fn every_case_states_its_requirement_at_its_level_and_names_its_rules() {
        for case in all() {
            assert!(!case.rules.is_empty(), "{} names no rule", case.id);
            let keyword = match case.level {
                Level::Must => "MUST",
                Level::Should => "SHOULD",
            };
            assert!(
                case.requirement.contains(keyword),
                "{}: requirement lacks {keyword}",
                case.id
            );
        }
    }

    #[test]
    fn every_rule_is_checked_by_a_case() {
        for rule in crate::Rule::ALL {
            assert!(
                all().iter().any(|c| c.rules.contains(&rule)),
                "no case checks {rule}"
            );
        }
    }

    #[test]
    fn the_ten_original_phases_keep_their_names_and_order() {
        let names: Vec<&str> = CATALOGUE.iter().take(10).map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "Single echo connection",
                "Two echo connections",
                "20 echo connections",
                "Bulk data, 20 connections",
                "Mix of blocked and normal",
                "One-way shutdown",
                "Early close",
                "Non-timeout of active client",
                "Timeout of lazy client",
                "Timeout of lazy reverse client",
            ]
        );
    }
}
