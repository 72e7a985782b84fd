//! The catalogue against the reference proxy in its other modes: the buffered copy (the default
//! is splice on Linux), tokio's event loop (the default for plain forwarding is the proxy's own
//! epoll loop), one mapping of a process that serves several, one event loop or four (the
//! default is one per core), its SOCKS5 and HTTP CONNECT fronts, with and without
//! credentials, and sending the PROXY protocol in each version, as a forwarder and as a front;
//! and its UDP forwarding against the UDP catalogue.

use std::time::Duration;

const STALL: Duration = Duration::from_secs(2);

/// The lab form with `options` before it.
fn lab_form<'a>(options: &[&'a str]) -> Vec<&'a str> {
    let mut command = vec![env!("CARGO_BIN_EXE_tprox-relay")];
    command.extend_from_slice(options);
    command.extend([
        "--stall-timeout",
        "{stall_timeout}",
        "{dest_host}",
        "{dest_port}",
        "{listen_port}",
    ]);
    command
}

/// The lab form with `options` before it passes the whole catalogue.
fn passes_every_case(options: &[&str]) {
    tprox_suite::Suite::new(lab_form(options))
        .stall_timeout(STALL)
        .run()
        .assert_conforms();
}

#[test]
fn the_buffered_copy_passes_every_case() {
    passes_every_case(&["--copy", "buffered"]);
}

#[test]
fn one_mapping_of_several_passes_every_case() {
    tprox_suite::Suite::new([
        env!("CARGO_BIN_EXE_tprox-relay"),
        "-p",
        "0:127.0.0.1:9",
        "-p",
        "127.0.0.1:{listen_port}:{dest_host}:{dest_port}",
        "-p",
        "[::]:0:localhost:7",
        "-d",
        "--stall-timeout",
        "{stall_timeout}",
    ])
    .stall_timeout(STALL)
    .run()
    .assert_conforms();
}

#[test]
fn the_tokio_event_loop_passes_every_case() {
    passes_every_case(&["--event-loop", "tokio"]);
}

#[test]
fn udp_forwarding_passes_the_udp_catalogue() {
    tprox_suite::Suite::new(lab_form(&["--udp"]))
        .udp()
        .stall_timeout(STALL)
        .run()
        .assert_conforms();
}

/// A `-p udp:` mapping beside TCP ones in one process: the TCP loops and the UDP sessions
/// share nothing but the process.
#[test]
fn a_udp_mapping_beside_tcp_ones_passes_the_udp_catalogue() {
    tprox_suite::Suite::new([
        env!("CARGO_BIN_EXE_tprox-relay"),
        "-p",
        "0:127.0.0.1:9",
        "-p",
        "udp:127.0.0.1:{listen_port}:{dest_host}:{dest_port}",
        "--stall-timeout",
        "{stall_timeout}",
    ])
    .udp()
    .stall_timeout(STALL)
    .run()
    .assert_conforms();
}

#[test]
fn one_event_loop_passes_every_case() {
    passes_every_case(&["--threads", "1"]);
}

/// A loop per CPU, each pinned to its own and taking the clients that arrive there.
#[test]
fn event_loops_pinned_to_their_cpus_pass_every_case() {
    passes_every_case(&["--pin-cpus"]);
}

/// Four event loops sharing the port, whatever the machine's cores.
#[test]
fn four_event_loops_pass_every_case() {
    passes_every_case(&["--threads", "4"]);
}

/// The front `flag` (`--socks5` or `--http-connect`), with `front`'s credentials when it has
/// them, passes the whole catalogue through tprox's handshake.
fn front_passes_every_case(flag: &str, front: &str) {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    let mut command = vec![
        env!("CARGO_BIN_EXE_tprox-relay").to_string(),
        flag.into(),
        "{listen_port}".into(),
        "--stall-timeout".into(),
        "{stall_timeout}".into(),
    ];
    if let [_, user, pass] = front.split(':').collect::<Vec<_>>()[..] {
        std::fs::write(&credentials, format!("{user}:{pass}\n")).unwrap();
        command.extend([
            "--front-credentials".into(),
            credentials.to_string_lossy().into_owned(),
        ]);
    }
    tprox_suite::Suite::new_front(command, front)
        .stall_timeout(STALL)
        .run()
        .assert_conforms();
}

#[test]
fn the_socks5_front_passes_every_case() {
    front_passes_every_case("--socks5", "socks5");
}

#[test]
fn the_socks5_front_with_a_password_passes_every_case() {
    front_passes_every_case("--socks5", "socks5:alice:open sesame");
}

#[test]
fn the_http_connect_front_passes_every_case() {
    front_passes_every_case("--http-connect", "connect");
}

#[test]
fn the_http_connect_front_with_a_password_passes_every_case() {
    front_passes_every_case("--http-connect", "connect:bob:s3cret");
}

/// With `--send-proxy VERSION`, the catalogue runs behind the header, and the header cases
/// pass too.
fn sends_the_proxy_protocol(version: &str, front: Option<(&str, &str)>) {
    let suite = match front {
        Some((flag, front)) => tprox_suite::Suite::new_front(
            [
                env!("CARGO_BIN_EXE_tprox-relay"),
                "--send-proxy",
                version,
                flag,
                "{listen_port}",
                "--stall-timeout",
                "{stall_timeout}",
            ],
            front,
        ),
        None => tprox_suite::Suite::new(lab_form(&["--send-proxy", version])),
    };
    let report = suite
        .proxy_protocol(&format!("send:{version}"))
        .stall_timeout(STALL)
        .run();
    let header_cases = report
        .cases
        .iter()
        .filter(|r| r.case.id.starts_with("proxy-protocol/"))
        .count();
    assert_eq!(header_cases, 2, "the header cases ran");
    report.assert_conforms();
}

#[test]
fn sending_the_proxy_protocol_v1_passes_every_case() {
    sends_the_proxy_protocol("v1", None);
}

#[test]
fn sending_the_proxy_protocol_v2_passes_every_case() {
    sends_the_proxy_protocol("v2", None);
}

/// A front's header carries the front's client, as the forwarder's does.
#[test]
fn the_socks5_front_sending_the_proxy_protocol_v2_passes_every_case() {
    sends_the_proxy_protocol("v2", Some(("--socks5", "socks5")));
}

/// With `--accept-proxy`, every client sends a header first, the catalogue runs behind it, and
/// the receiving cases pass; with `--send-proxy` too, the header it sends names the client the
/// received one named.
fn accepts_the_proxy_protocol(mode: &str, args: &[&str], front: Option<(&str, &str)>) {
    let suite = match front {
        Some((flag, front)) => tprox_suite::Suite::new_front(
            [
                env!("CARGO_BIN_EXE_tprox-relay"),
                flag,
                "{listen_port}",
                "--stall-timeout",
                "{stall_timeout}",
            ]
            .iter()
            .chain(args)
            .copied(),
            front,
        ),
        None => tprox_suite::Suite::new(lab_form(args)),
    };
    let report = suite.proxy_protocol(mode).stall_timeout(STALL).run();
    let header_cases = report
        .cases
        .iter()
        .filter(|r| r.case.id.starts_with("proxy-protocol/"))
        .count();
    // Five receiving cases, and the two sending ones where it sends.
    let sends = mode.contains("send:");
    assert_eq!(
        header_cases,
        5 + 2 * usize::from(sends),
        "the header cases ran"
    );
    report.assert_conforms();
}

#[test]
fn accepting_the_proxy_protocol_v1_passes_every_case() {
    accepts_the_proxy_protocol("accept:v1", &["--accept-proxy"], None);
}

#[test]
fn a_chained_proxy_accepting_v2_and_sending_v1_passes_every_case() {
    accepts_the_proxy_protocol(
        "accept:v2,send:v1",
        &["--accept-proxy", "--send-proxy", "v1"],
        None,
    );
}

/// A front behind another proxy: the header comes first, the handshake after it.
#[test]
fn the_socks5_front_accepting_the_proxy_protocol_v2_passes_every_case() {
    accepts_the_proxy_protocol(
        "accept:v2",
        &["--accept-proxy"],
        Some(("--socks5", "socks5")),
    );
}
