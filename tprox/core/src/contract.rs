//! The contract as a document: every rule with its text, its level and the cases that check
//! it; every case with its requirement, its rules and what it assumes of the proxy's speed and
//! of the machine; the time limits with their values. Generated from the catalogue's own data,
//! so it cannot drift from what tprox checks: `docs/contract.md` is this text, and a test
//! fails when the committed file differs (`tprox --contract > docs/contract.md` renews it).

use std::fmt::Write;

use crate::case::Level;
use crate::cases::{
    all, bulk, resources, shutdown, timeout, CATALOGUE, FRONT_CASES, PROXY_PROTOCOL_ACCEPT_CASES,
    PROXY_PROTOCOL_CASES, UDP_CATALOGUE,
};
use crate::clock;
use crate::harness::PROMPT;
use crate::rules::{self, Rule};

/// The contract document, in Markdown.
pub fn markdown() -> String {
    let mut out = String::new();
    out.push_str(HEADER);
    out.push_str("\n## The rules\n\n");
    for rule in Rule::ALL {
        let cases: Vec<String> = all()
            .iter()
            .filter(|c| c.rules.contains(&rule))
            .map(|c| format!("`{}`", c.id))
            .collect();
        let _ = writeln!(
            out,
            "- **{rule} {}** ({}). {}\n  Checked by: {}.",
            rule.title(),
            rule_level(rule),
            rule.text(),
            cases.join(", ")
        );
    }
    out.push_str("\n## The cases\n\n");
    out.push_str(
        "T is the stall timeout (`--stall-timeout`, 10 s by default). Ids are hierarchical: \
         `--only shutdown/` selects a group, `--skip 'timeout/*'` leaves one out.\n",
    );
    for case in CATALOGUE {
        case_section(&mut out, case);
    }
    out.push_str(
        "\n## The front cases\n\n\
         A front is a SOCKS5 or HTTP CONNECT proxy: its clients name the destination in a \
         handshake. `tprox --front socks5` (or `socks5:USER:PASS`, `connect`, \
         `connect:USER:PASS`) starts the proxy with `LISTEN_PORT` only, makes every client of \
         every case above do the handshake first, naming the case's destination, and then runs \
         these cases too. The handshake happens before any case starts a clock.\n",
    );
    for case in FRONT_CASES {
        case_section(&mut out, case);
    }
    out.push_str(
        "\n## The PROXY protocol cases\n\n\
         A proxy may be configured to send the PROXY protocol (haproxy's \
         `doc/proxy-protocol.txt`) to the destination, to tell it who the client was. With \
         `tprox --proxy-protocol send:v1` (or `send:v2`), tprox's destination reads the header \
         off every connection it accepts, every case above runs on the stream behind it, and \
         these cases judge the headers themselves. A connection that starts with no header \
         keeps its bytes, so a proxy that sends none fails these cases and whatever its stream \
         then breaks.\n",
    );
    for case in PROXY_PROTOCOL_CASES {
        case_section(&mut out, case);
    }
    out.push_str(
        "\n## The PROXY protocol receiving cases\n\n\
         A proxy may instead, or as well, be configured to accept the PROXY protocol from its \
         clients, when it stands behind another proxy. With `tprox --proxy-protocol accept:v1` \
         (or `accept:v2`; `accept:v2,send:v1` for a proxy that does both), every client tprox \
         connects sends a well-formed header first, naming 127.88.0.1 with the client's own \
         port as the source and the proxy's listener as the destination, every case above runs \
         on the stream behind it, and these cases send it the awkward ways. Before the cases, a \
         probe client sends a header and a line: a proxy that closes it without dialing ends \
         the run with that said (it is configured for no header, or another version), and one \
         that passes the header on to the destination has the copy read off there for every \
         case but `proxy-protocol/not-forwarded`, so that this one mistake fails that case \
         alone.\n",
    );
    for case in PROXY_PROTOCOL_ACCEPT_CASES {
        case_section(&mut out, case);
    }
    out.push_str(
        "\n## The UDP cases\n\n\
         A UDP forwarder relays datagrams rather than connections. `tprox --udp` starts it with \
         the same command template, `{listen_port}` being a UDP port and `{stall_timeout}` its \
         sessions' idle timeout T; tprox's destination answers datagrams on the UDP port \
         `{dest_port}`, and these cases run instead of every case above (rules R16 to R19; \
         R1 to R15 are a TCP proxy's). Before the cases, and around each, a datagram is echoed \
         through from a fresh client, sent again each second until it arrives (UDP may drop \
         one): a forwarder that passes none on ends the run with that said.\n",
    );
    for case in UDP_CATALOGUE {
        case_section(&mut out, case);
    }
    out.push_str(&timing());
    out
}

fn case_section(out: &mut String, case: &crate::Case) {
    let _ = write!(
        out,
        "\n### `{}`: {}\n\n{}\n\n- Rules: {} ({})\n- Assumes: {}\n",
        case.id,
        case.name,
        case.requirement,
        rules::list(case.rules),
        case.level,
        case.assumes
    );
}

/// A rule's level: SHOULD when every case that checks it is a SHOULD case.
fn rule_level(rule: Rule) -> Level {
    let cases = all();
    let checking = cases.iter().filter(|c| c.rules.contains(&rule));
    if checking.clone().count() > 0 && checking.clone().all(|c| c.level == Level::Should) {
        Level::Should
    } else {
        Level::Must
    }
}

/// The limits and windows, with the values the code uses.
fn timing() -> String {
    let mut out = String::from(
        "\n## Time limits and windows\n\n\
         A verdict must not depend on the machine's load or on the proxy's speed. Where a rule \
         is about time (R7), the windows scale with T and are measured from the proxy's own \
         observed events; everywhere else a limit is only the point at which waiting longer \
         would not change the answer.\n\n\
         | what | value |\n|---|---|\n",
    );
    let rows = [
        (
            "PROMPT: the longest tprox waits for anything the contract expects at once (an echo, a connection, a close)",
            format!("{} s", PROMPT.as_secs()),
        ),
        (
            "A stalled pair is aborted no sooner than",
            format!("{} × T after the proxy's last write", timeout::EARLIEST),
        ),
        (
            "and no later than",
            format!(
                "{} × T + {} × T + {} × the worst scheduling delay measured during the case",
                timeout::LATEST,
                clock::SLACK_SHARE,
                clock::LATENESS_FACTOR
            ),
        ),
        (
            "Freezing (blocked-mix): tprox's heartbeat (a few bytes every 5 ms through another connection) pauses, while the blocked connection is open, for",
            format!(
                "{} × T + {} × the worst scheduling delay of the heartbeat's threads",
                bulk::FROZEN_SHARE,
                clock::LATENESS_FACTOR
            ),
        ),
        (
            "or pauses, and resumes only as the proxy closes the blocked connection, for",
            format!(
                "{} × T, and at least {} × that delay + 50 ms",
                bulk::FROZEN_SPAN_SHARE,
                clock::LATENESS_FACTOR
            ),
        ),
        (
            "A connection counts as blocked after its writes make no progress for",
            format!("{} ms", bulk::BLOCKED_QUIET.as_millis()),
        ),
        (
            "Idle connections (timeout/idle) and half-closed ones (shutdown/idle-half-closed) stay quiet for",
            format!("{} × T and {} × T", timeout::IDLE_SPAN, shutdown::HALF_CLOSED_IDLE),
        ),
        (
            "Descriptors: slack for a runtime's lazily opened descriptors",
            format!("{}", resources::FD_SLACK),
        ),
        (
            "Descriptors that are not sockets (a runtime's pools of pipes or event descriptors): once the first connections have come and gone, the rest may add fewer than",
            format!(
                "one per {} connections ({} are always allowed)",
                resources::OTHERS_PER_CONNECTION,
                resources::FD_SLACK
            ),
        ),
        (
            "One-way shutdown: after the EOF has arrived, the pair is left alone (the closer's connection must stay open) before the other peer answers, for",
            format!("{} ms", shutdown::SETTLE.as_millis()),
        ),
    ];
    for (what, value) in rows {
        let _ = writeln!(out, "| {what} | {value} |");
    }
    out.push_str(
        "\nAround every case tprox checks that the proxy survives: a plain echo through it \
         before the case (its destination connection held open until the echo is back, so \
         that the check never depends on how the proxy handles a destination's EOF), and \
         after it the proxy's exit status and another echo. A failure of that check fails \
         the case, and is counted and reported apart (`survival` in the JSON report, a line \
         before the closing one): it is charged to R11 (after the case) or R1 (before it, \
         when the case did not run), not to the case's own rules, since one such bug fails \
         every case it happens in; for a UDP forwarder, whose check is a datagram echo from a \
         fresh client, to R19 (after) or R16 (before).\n",
    );
    out.push_str(
        "\nA proxy that opens its connection to the destination only once the client has sent \
         something is told apart when it starts (its readiness probe, a connection that sends \
         nothing, is never forwarded). `connect/server-first` judges that (R8); every other \
         case then lets the client speak first with a primer that the destination reads and \
         checks, and says so in its trace, so that this one design choice costs the one rule \
         it breaks.\n",
    );
    out
}

const HEADER: &str = "\
# The TCP proxy contract

<!-- Generated by `tprox --contract` from the catalogue's own data; do not edit by hand. -->

This is what tprox checks and the reference proxy meets. Rules are numbered so that every case
can name the rules it checks and every rule can be traced to its cases. MUST rules fail a proxy;
SHOULD rules are reported, and fail it only under `--strict`.

## Invocation

The classic proxy is started as `PROXY DEST_HOST DEST_PORT LISTEN_PORT`: it listens on
LISTEN_PORT and forwards every accepted connection to DEST_HOST:DEST_PORT over a new connection
of its own. tprox also takes a command template whose arguments contain the placeholders
`{dest_host}`, `{dest_port}`, `{listen_port}` and `{stall_timeout}` (seconds), so that any proxy
can be driven.
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_and_rule_is_in_the_document() {
        let text = markdown();
        for case in all() {
            assert!(text.contains(&format!("### `{}`", case.id)), "{}", case.id);
            assert!(!case.assumes.is_empty(), "{} assumes nothing", case.id);
        }
        for rule in Rule::ALL {
            assert!(text.contains(&format!("**{rule} {}**", rule.title())));
        }
        assert_eq!(rule_level(Rule::R12), Level::Should);
        assert_eq!(rule_level(Rule::R1), Level::Must);
    }

    /// `docs/contract.md` is the generated text; `TPROX_UPDATE_CONTRACT=1` writes it anew.
    #[test]
    fn the_committed_contract_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/contract.md");
        let generated = markdown();
        if std::env::var_os("TPROX_UPDATE_CONTRACT").is_some() {
            std::fs::write(&path, &generated).expect("write docs/contract.md");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/contract.md differs from the catalogue: run `tprox --contract > docs/contract.md` \
             (or the tests with TPROX_UPDATE_CONTRACT=1) and commit it"
        );
    }
}
