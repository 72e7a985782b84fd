//! The reference proxy's command line: bad input gives one clear line and a non-zero exit.

use assert_cmd::Command;
use predicates::str::contains;

fn tcpproxy() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tcpproxy"))
}

#[test]
fn missing_arguments_show_the_usage() {
    tcpproxy().assert().code(2).stderr(contains(
        "Usage: tcpproxy <DEST_HOST> <DEST_PORT> <LISTEN_PORT>",
    ));
}

#[test]
fn a_bad_port_is_named() {
    tcpproxy()
        .args(["127.0.0.1", "http", "9000"])
        .assert()
        .code(2)
        .stderr(contains("'http'"));
    tcpproxy()
        .args(["127.0.0.1", "80", "0"])
        .assert()
        .code(2)
        .stderr(contains("<LISTEN_PORT>"));
    tcpproxy()
        .args(["127.0.0.1", "80", "70000"])
        .assert()
        .code(2)
        .stderr(contains("70000"));
}

#[test]
fn an_unresolvable_host_is_reported_at_startup() {
    tcpproxy()
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
    tcpproxy()
        .args(["127.0.0.1", "80", &port])
        .timeout(std::time::Duration::from_secs(10))
        .assert()
        .code(1)
        .stderr(contains(format!("cannot listen on 127.0.0.1:{port}")));
}

#[test]
fn a_bad_stall_timeout_is_explained() {
    tcpproxy()
        .args(["127.0.0.1", "80", "9000", "--stall-timeout", "-1"])
        .assert()
        .code(2)
        .stderr(contains("positive number of seconds"));
}
