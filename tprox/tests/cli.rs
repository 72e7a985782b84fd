//! The `tprox` command as a user meets it: exit codes, listings, filters, setup failures, and
//! no process left behind.

use std::path::Path;
use std::process::Command as StdCommand;
use std::time::{Duration, Instant};

use assert_cmd::Command;

mod common;
use common::{assert_all_gone, interrupt_when_started};

const TPROX: &str = env!("CARGO_BIN_EXE_tprox");

fn tprox() -> Command {
    Command::new(TPROX)
}

/// A proxy command that runs `script` in a shell, with the classic arguments as $1 $2 $3.
fn shell_proxy(script: &str) -> Vec<String> {
    [
        "sh",
        "-c",
        script,
        "sh",
        "{dest_host}",
        "{dest_port}",
        "{listen_port}",
    ]
    .map(String::from)
    .to_vec()
}

/// The reference proxy, started through a shell that first appends its pid to `pidfile` (after
/// running `prelude`), so that a test can check afterwards that nothing it started survives.
fn recorded_reference(pidfile: &Path, prelude: &str) -> Vec<String> {
    let script = format!(
        "{prelude} echo $$ >> {}; exec {TPROX} __reference-proxy \"$@\"",
        pidfile.display()
    );
    shell_proxy(&script)
}

#[test]
fn list_shows_every_case_with_its_rules() {
    let out = tprox()
        .arg("--list")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    for case in tprox_core::CATALOGUE {
        let line = text
            .lines()
            .find(|l| l.starts_with(case.id))
            .unwrap_or_else(|| panic!("{} not listed", case.id));
        assert!(
            line.contains(&tprox_core::rules::list(case.rules)),
            "{line}"
        );
        assert!(line.contains(case.name), "{line}");
    }
}

#[test]
fn help_teaches_placeholders_and_exit_codes() {
    let out = tprox()
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    for needle in [
        "{listen_port}",
        "{stall_timeout}",
        "--reference",
        "Exit status",
        "130",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}");
    }
}

/// Bad input: each gets its exit status and a message that says what to do.
#[rstest::rstest]
#[case::no_proxy(&[], 2, "--reference")]
#[case::reference_and_a_proxy(&["--reference", "./tcpproxy"], 2, "cannot be used with")]
#[case::a_filter_that_selects_nothing(&["--reference", "--only", "nosuch/"], 3, "matches no case")]
#[case::a_bad_glob(&["--reference", "--only", "echo/["], 2, "invalid pattern")]
#[case::a_missing_program(&["./no-such-proxy"], 2, "no such program")]
#[case::a_bad_stall_timeout(&["--stall-timeout", "0", "--reference"], 2, "between 0 and 3600")]
#[case::an_unknown_option(&["--nonsense"], 2, "unexpected argument '--nonsense'")]
#[case::an_unknown_option_before_the_proxy(&["--profil", "x"], 2, "unexpected argument '--profil'")]
#[case::a_proxy_protocol_mode_that_is_none(&["--proxy-protocol", "send:v3", "--reference"], 2, "Give send:v1 or send:v2")]
#[case::a_proxy_protocol_for_a_profile(&["--proxy-protocol", "send:v1", "--profile", "socat"], 2, "that profile speaks no PROXY protocol")]
#[case::udp_for_a_profile(&["--udp", "--profile", "socat"], 2, "that profile is a TCP proxy; the UDP forwarders among the profiles: ref-udp, socat-udp")]
#[case::udp_through_a_front(&["--udp", "--front", "socks5", "--reference"], 2, "cannot be used with")]
fn bad_input_is_explained_with_its_exit_code(
    #[case] args: &[&str],
    #[case] code: i32,
    #[case] message: &str,
) {
    tprox()
        .args(args)
        .assert()
        .code(code)
        .stderr(predicates::str::contains(message));
}

/// A program that binds the UDP port and forwards nothing: said once, before the cases.
#[test]
fn a_udp_run_of_a_proxy_that_forwards_no_datagram_is_a_setup_error() {
    tprox()
        .args([
            "--udp",
            "--",
            "python3",
            "-c",
            "import socket, sys, time\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.bind(('127.0.0.1', int(sys.argv[1])))\n\
             time.sleep(60)",
            "{listen_port}",
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("the proxy does not forward UDP"))
        .stderr(predicates::str::contains(
            "no datagram sent to the proxy reached the destination",
        ));
}

#[test]
fn a_proxy_that_exits_at_once_is_reported_with_its_status_and_output() {
    tprox()
        .args([
            "--",
            "sh",
            "-c",
            "echo 'usage: proxy HOST PORT' >&2; exit 7",
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("exit status 7"))
        .stderr(predicates::str::contains("usage: proxy HOST PORT"));
}

#[test]
fn a_proxy_that_never_listens_is_a_setup_error_and_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    let script = format!(
        "echo $$ >> {}; echo starting; exec sleep 60",
        pidfile.display()
    );
    let started = Instant::now();
    tprox()
        .args(["--startup-timeout", "1", "--", "sh", "-c", &script])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("never listened"))
        .stderr(predicates::str::contains("starting"));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_all_gone(&pidfile);
}

#[test]
fn a_passing_run_prints_the_original_format_and_exits_0() {
    let out = tprox()
        .args(["--reference", "--only", "echo/single"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("Single echo connection: passed\n"), "{text}");
    assert_eq!(text.lines().last(), Some("1 passed, 0 failed"));
}

#[test]
fn a_failing_run_explains_the_failure_and_exits_1() {
    // The reference proxy pointed at a port where nothing listens: it closes every client.
    let out = tprox()
        .args([
            "--only",
            "echo/single",
            "--",
            TPROX,
            "__reference-proxy",
            "{dest_host}",
            "1",
            "{listen_port}",
        ])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("Single echo connection: failed"), "{text}");
    for field in ["expected", "observed", "rerun", "echo/single (R1, MUST)"] {
        assert!(text.contains(field), "no {field} in {text}");
    }
    assert_eq!(text.lines().last(), Some("0 passed, 1 failed"));
}

#[test]
fn proxies_and_their_children_are_gone_after_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    // A chatty proxy: a child floods stdout without end. tprox must drain it, pass the case,
    // and stop the child with the proxy's process group.
    let prelude = format!(
        "yes 'chatter from the proxy' & echo $! >> {};",
        pidfile.display()
    );
    tprox()
        .args(["--only", "echo/", "--"])
        .args(recorded_reference(&pidfile, &prelude))
        .timeout(Duration::from_secs(60))
        .assert()
        .success();
    assert_all_gone(&pidfile);
}

#[test]
fn ctrl_c_stops_every_proxy_and_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    let mut child = StdCommand::new(TPROX)
        .args(["--only", "timeout/", "--"])
        .args(recorded_reference(&pidfile, ""))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Preflight plus three cases: four proxies.
    assert_eq!(interrupt_when_started(&mut child, &pidfile, 4), Some(130));
    assert_all_gone(&pidfile);
}

#[test]
fn rules_lists_every_rule_with_its_cases() {
    let out = tprox()
        .arg("--rules")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    for rule in tprox_core::Rule::ALL {
        assert!(
            text.contains(&format!("{rule} {}", rule.title())),
            "{rule} missing"
        );
    }
    assert!(text.contains("checked by: echo/single"), "{text}");
}

#[test]
fn shared_mode_runs_every_case_on_one_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pids");
    let out = tprox()
        .args([
            "--shared",
            "--only",
            "echo/",
            "--only",
            "shutdown/one-way",
            "--",
        ])
        .args(recorded_reference(&pidfile, ""))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(
        String::from_utf8(out).unwrap().lines().last(),
        Some("4 passed, 0 failed")
    );
    // One proxy for the preflight, one for all four cases.
    let started = std::fs::read_to_string(&pidfile).unwrap().lines().count();
    assert_eq!(started, 2);
    assert_all_gone(&pidfile);
}

/// A proxy broken on exactly one start, the second (the first case's first attempt, after the
/// preflight): it forwards to a port where nothing listens. Every other start is the reference.
fn broken_on_second_start(dir: &Path) -> Vec<String> {
    let counter = dir.join("starts");
    let script = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}; \
         if [ $n -eq 2 ]; then exec {TPROX} __reference-proxy \"$1\" 1 \"$3\"; fi; \
         exec {TPROX} __reference-proxy \"$@\"",
        c = counter.display()
    );
    shell_proxy(&script)
}

#[test]
fn a_case_that_passes_on_a_retry_is_flaky_not_passed() {
    let dir = tempfile::tempdir().unwrap();
    let out = tprox()
        .args(["--retries", "2", "--only", "echo/single", "--"])
        .args(broken_on_second_start(dir.path()))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("Single echo connection: flaky (failed, then passed on attempt 2)"),
        "{text}"
    );
    assert!(text.contains("first failure: expected"), "{text}");
    assert_eq!(text.lines().last(), Some("0 passed, 0 failed, 1 flaky"));
}

#[test]
fn without_retries_the_same_failure_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    tprox()
        .args(["--only", "echo/single", "--"])
        .args(broken_on_second_start(dir.path()))
        .assert()
        .code(1);
}

#[test]
fn repeat_reports_each_case_failure_rate() {
    let dir = tempfile::tempdir().unwrap();
    tprox()
        .args(["--repeat", "3", "--only", "echo/single", "--"])
        .args(broken_on_second_start(dir.path()))
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "echo/single              failed 1 of 3 runs (33%)",
        ));
    tprox()
        .args(["--repeat", "2", "--only", "echo/single", "--reference"])
        .assert()
        .success()
        .stderr(predicates::str::contains("no case failed in any run"));
}

/// The exit statuses are written down three times, for three readers: the code (`tprox::exit`),
/// `tprox --help` and README's table. They must say the same statuses.
#[test]
fn the_exit_status_tables_agree() {
    let code = [
        tprox::exit::PASSED,
        tprox::exit::FAILED,
        tprox::exit::SETUP,
        tprox::exit::NOTHING_SELECTED,
        tprox::exit::OUTPUT,
        tprox::exit::INTERRUPTED,
    ]
    .map(u32::from)
    .to_vec();
    let help = tprox().arg("--help").assert().success();
    let help = String::from_utf8_lossy(&help.get_output().stdout).into_owned();
    let block = help
        .split("Exit status:\n")
        .nth(1)
        .expect("--help has an \"Exit status:\" block");
    let from_help: Vec<u32> = block
        .lines()
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let table = readme
        .split("## Exit status\n")
        .nth(1)
        .expect("README has an \"Exit status\" section");
    let table = table.split("\n## ").next().unwrap_or(table);
    let from_readme: Vec<u32> = table
        .lines()
        .skip_while(|l| !l.starts_with("|---"))
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .next()
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(from_help, code, "--help:\n{block}");
    assert_eq!(from_readme, code, "README:\n{table}");
}

/// `--proxy-protocol send:VERSION`: the reference started with `--send-proxy` passes the
/// header cases; a proxy that sends no header stops the run before the cases, saying why.
#[test]
fn the_proxy_protocol_is_checked_and_a_proxy_that_sends_none_is_told() {
    for version in ["v1", "v2"] {
        tprox()
            .args([
                "--reference",
                "--proxy-protocol",
                &format!("send:{version}"),
            ])
            .args(["--only", "proxy-protocol/", "--only", "echo/single"])
            .assert()
            .code(0)
            .stdout(predicates::str::contains(format!(
                "which sends PROXY protocol {version} headers"
            )))
            .stdout(predicates::str::contains(
                "One well-formed header first: passed",
            ))
            .stdout(predicates::str::contains("3 passed, 0 failed"));
    }
    tprox()
        .args([
            "--proxy-protocol",
            "send:v1",
            "--",
            TPROX,
            "__reference-proxy",
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "sent no PROXY protocol header on it",
        ));
}

/// `--proxy-protocol accept:VERSION`: the reference started with `--accept-proxy` passes the
/// receiving cases; a plain forwarder, which passes the header on, fails
/// `proxy-protocol/not-forwarded` and still passes the cases whose destination reads the
/// client's bytes (tprox saw the copy at the start and reads it off); a proxy that closes
/// every client sending a header stops the run before the cases, saying why.
#[test]
fn accepting_the_proxy_protocol_is_checked_and_a_proxy_that_takes_none_is_told() {
    tprox()
        .args(["--reference", "--proxy-protocol", "accept:v2"])
        .args([
            "--only",
            "proxy-protocol/",
            "--skip",
            "proxy-protocol/header-timeout",
        ])
        .args(["--only", "echo/single"])
        .assert()
        .code(0)
        .stdout(predicates::str::contains(
            "which accepts PROXY protocol v2 headers",
        ))
        .stdout(predicates::str::contains(
            "Header split into one-byte writes: passed",
        ))
        .stdout(predicates::str::contains("5 passed, 0 failed"));
    let plain = [
        TPROX,
        "__reference-proxy",
        "{dest_host}",
        "{dest_port}",
        "{listen_port}",
    ];
    tprox()
        .args(["--proxy-protocol", "accept:v1"])
        .args([
            "--only",
            "proxy-protocol/not-forwarded",
            "--only",
            "echo/single",
        ])
        .arg("--")
        .args(plain)
        .assert()
        .code(1)
        .stdout(predicates::str::contains("Single echo connection: passed"))
        .stdout(predicates::str::contains("the client's header came first"))
        .stdout(predicates::str::contains("1 passed, 1 failed"));
    tprox()
        .args(["--proxy-protocol", "accept:v1", "--"])
        .args([TPROX, "__reference-proxy", "--socks5", "{listen_port}"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "a client that sent a well-formed PROXY protocol header and a line of data got no \
             connection to the destination",
        ));
}
