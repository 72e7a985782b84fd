//! The reference proxy's command line: bad input gives one clear line and a non-zero exit.

use assert_cmd::Command;
use predicates::str::contains;

fn relay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tprox-relay"))
}

#[test]
fn missing_arguments_show_the_usage() {
    relay()
        .assert()
        .code(2)
        .stderr(contains("nothing to forward"))
        .stderr(contains(
            "Usage: tprox-relay [OPTIONS] <DEST_HOST> <DEST_PORT> <LISTEN_PORT>",
        ))
        .stderr(contains("-p [BIND:]LOCAL:HOST:PORT"));
}

#[test]
fn a_bad_port_is_named() {
    relay()
        .args(["127.0.0.1", "http", "9000"])
        .assert()
        .code(2)
        .stderr(contains("'http'"));
    relay()
        .args(["127.0.0.1", "80", "0"])
        .assert()
        .code(2)
        .stderr(contains("LISTEN_PORT"));
    relay()
        .args(["127.0.0.1", "80", "70000"])
        .assert()
        .code(2)
        .stderr(contains("70000"));
}

#[test]
fn an_unresolvable_host_is_reported_at_startup() {
    relay()
        .args(["no-such-host.invalid", "80", "9000"])
        .assert()
        .code(2)
        .stderr(contains(
            "cannot resolve destination host 'no-such-host.invalid'",
        ));
}

#[test]
fn a_port_in_use_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    relay()
        .args(["127.0.0.1", "80", &port])
        .timeout(std::time::Duration::from_secs(10))
        .assert()
        .code(1)
        .stderr(contains(format!("cannot listen on 127.0.0.1:{port}")));
}

#[test]
fn a_bad_stall_timeout_is_explained() {
    relay()
        .args(["127.0.0.1", "80", "9000", "--stall-timeout", "-1"])
        .assert()
        .code(2)
        .stderr(contains("positive number of seconds"));
}

/// Each bad input: the arguments, and what the one line on stderr must say.
#[rstest::rstest]
#[case(&["127.0.0.1", "80"], "the lab form needs all three")]
#[case(&["-p", "8080:example.com"], "is not [BIND:]LOCAL:HOST:PORT")]
#[case(&["-p", "8080:h:0"], "destination port must be 1-65535")]
#[case(&["-p", "[::1:80:h:80"], "unclosed '['")]
#[case(&["-p", "0:h:80", "--via", "https://p:1"], "only http:// proxies")]
#[case(&["-p", "0:h:80", "--via", "p:3128"], "is not a URL like http://")]
#[case(&["-p", "0:h:80", "--direct-fallback"], "--via")]
#[case(&["-p", "0:127.0.0.1:80", "--copy", "fast"], "[possible values: auto, splice, buffered]")]
#[case(&["-p", "0:127.0.0.1:80", "--grace", "-1"], "0 or more")]
#[case(&["--config", "/nonexistent/map.toml"], "cannot read mapping file /nonexistent/map.toml")]
#[case(&["-p", "0:127.0.0.1:80", "--sni", "a.example"], "is not NAME=HOST:PORT")]
#[case(&["-p", "0:127.0.0.1:80", "--sni", "a.example=h:0"], "is not HOST:PORT")]
#[case(&["-p", "0:127.0.0.1:80", "--sni-only"], "--sni")]
#[case(&["-p", "0:127.0.0.1:80", "--sni", "a.example=no-such-host.invalid:443"], "cannot resolve destination host 'no-such-host.invalid'")]
fn bad_input_is_one_clear_line(#[case] args: &[&str], #[case] says: &str) {
    let output = relay()
        .args(args)
        .timeout(std::time::Duration::from_secs(10))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(says), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_bad_mapping_file_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("map.toml");
    std::fs::write(&file, "[[mapping]]\nlisten = \"127.0.0.1:0\"\ndest = 5\n").unwrap();
    relay()
        .args(["--config", file.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(contains("line 3"));
    std::fs::write(&file, "# nothing yet\n").unwrap();
    relay()
        .args(["--config", file.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(contains("has no [[mapping]] entries"));
}

#[test]
fn the_help_teaches_every_mode() {
    let output = relay().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for part in [
        "--map",
        "--config",
        "--via",
        "--direct-fallback",
        "--log-connections",
        "--grace",
        "--max-connections",
        "--copy",
        "Listening on",
        "SIGTERM",
        "[[mapping]]",
    ] {
        assert!(help.contains(part), "--help lacks {part}:\n{help}");
    }
}
