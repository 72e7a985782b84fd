//! `--profile` and `--list-profiles`: known proxies started with generated configurations.
//! The reference profile always exists; nginx (Debian packages nginx and libnginx-mod-stream,
//! which `.ci/run` installs) shows a note under the failure it explains.

use assert_cmd::Command;
use predicates::str::contains;

fn tprox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tprox"))
}

#[test]
fn the_reference_profile_passes() {
    let selected = tprox_core::CATALOGUE
        .iter()
        .filter(|c| c.id.starts_with("echo/") || c.id.starts_with("shutdown/"))
        .count();
    tprox()
        .args([
            "--profile",
            "ref",
            "--stall-timeout",
            "2",
            "--only",
            "echo/",
            "--only",
            "shutdown/",
        ])
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .code(0)
        .stdout(contains(
            "testing ref (the reference proxy built into tprox",
        ))
        .stdout(contains(format!("{selected} passed, 0 failed")));
}

#[test]
fn nginx_fails_half_close_and_the_profile_says_why() {
    tprox_suite::require(
        "/usr/lib/nginx/modules/ngx_stream_module.so",
        "nginx libnginx-mod-stream",
    );
    tprox()
        .args([
            "--profile",
            "nginx",
            "--stall-timeout",
            "2",
            "--only",
            "shutdown/one-way",
            "--only",
            "echo/single",
        ])
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .code(1)
        .stdout(contains("Single echo connection: passed"))
        .stdout(contains("One-way shutdown: failed"))
        .stdout(contains("proxy note  proxy_half_close is off by default"))
        .stdout(contains("rerun       tprox --only shutdown/one-way"))
        .stdout(contains("--profile nginx"));
}

/// A front's profile brings its handshake: the front cases run, and a failure of one is
/// explained by the front's documented behaviour.
#[test]
fn a_front_profile_is_tested_through_its_front() {
    tprox_suite::require("/usr/bin/tinyproxy", "tinyproxy");
    tprox()
        .args([
            "--profile",
            "tinyproxy",
            "--stall-timeout",
            "2",
            "--only",
            "front/refused",
            "--only",
            "echo/single",
        ])
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .code(1)
        .stdout(contains("through its connect front"))
        .stdout(contains("Single echo connection: passed"))
        .stdout(contains("Refused destination answered: failed"))
        .stdout(contains(
            "proxy note  a failed dial, refused or timed out, is answered 500",
        ));
}

#[test]
fn a_front_that_does_not_fit_the_profile_is_a_usage_error() {
    tprox()
        .args(["--profile", "nginx", "--front", "socks5"])
        .assert()
        .code(2)
        .stderr(contains("nginx is not a SOCKS5 or HTTP CONNECT front"))
        .stderr(contains("squid, tinyproxy"));
    tprox()
        .args(["--profile", "tinyproxy", "--front", "socks5"])
        .assert()
        .code(2)
        .stderr(contains("tinyproxy is a connect front"));
}

#[test]
fn the_list_shows_every_profile_and_what_to_install() {
    let output = tprox()
        .arg("--list-profiles")
        .env("TPROX_TCPPROXY_CRATE", "/nonexistent/tcpproxy")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    for name in [
        "ref",
        "ref-buffered",
        "socat",
        "haproxy",
        "nginx",
        "rinetd",
        "redir",
        "tcpproxy",
        "ref-socks5",
        "ref-connect",
        "squid",
        "tinyproxy",
        "microsocks",
        "dante",
        "v2ray",
        "pproxy",
        "node-proxy",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} missing:\n{text}"
        );
    }
    assert!(
        text.contains("not installed: cargo install tcpproxy --version 0.4.1"),
        "{text}"
    );
}

#[test]
fn unknown_and_missing_profiles_are_usage_errors() {
    tprox()
        .args(["--profile", "nope"])
        .assert()
        .code(2)
        .stderr(contains(
            "no profile 'nope'; the profiles are: ref, ref-buffered",
        ));
    tprox()
        .args(["--profile", "tcpproxy"])
        .env("TPROX_TCPPROXY_CRATE", "/nonexistent/tcpproxy")
        .assert()
        .code(2)
        .stderr(contains("cargo install tcpproxy --version 0.4.1"));
    tprox()
        .args(["--profile", "ref", "--reference"])
        .assert()
        .code(2)
        .stderr(contains("cannot be used with"));
}
