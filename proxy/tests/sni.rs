//! SNI routing with real TLS: `openssl s_server` destinations, each with a certificate of its
//! own name, and `openssl s_client` handshakes through tprox-relay, which never terminates TLS.
//! The certificate the client sees tells which destination answered.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::Proxy;

/// `openssl s_server` with a fresh self-signed certificate for `name`, killed on drop.
struct TlsServer {
    child: Child,
    port: u16,
}

impl TlsServer {
    fn start(dir: &Path, name: &str) -> TlsServer {
        tprox_suite::require("openssl", "openssl");
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
            ])
            .arg("-subj")
            .arg(format!("/CN={name}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("these tests need openssl (apt-get install openssl)");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        let mut server = TlsServer { child, port };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                server.child.try_wait().unwrap().is_none(),
                "s_server for {name} exited"
            );
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "s_server for {name} never listened"
            );
            thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn dest(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Handshakes through `proxy` asking for `name` (none: no SNI at all); returns what s_client
/// printed, which names the certificate the server presented.
fn handshake(proxy: &Proxy, name: Option<&str>) -> String {
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-brief", "-connect"])
        .arg(proxy.listening[0].to_string());
    match name {
        Some(name) => command.args(["-servername", name]),
        None => command.arg("-noservername"),
    };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start openssl s_client");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn presented(output: &str) -> Option<&str> {
    output
        .lines()
        .find_map(|line| line.strip_prefix("Peer certificate: CN = "))
        .map(str::trim)
}

#[test]
fn tls_clients_reach_the_destination_their_server_name_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    let a = TlsServer::start(dir.path(), "a.example");
    let b = TlsServer::start(dir.path(), "b.example");
    let fallback = TlsServer::start(dir.path(), "default.example");
    let proxy = Proxy::start(
        &[
            "-d",
            "-p",
            &format!("0:{}", fallback.dest()),
            "--sni",
            &format!("a.example={}", a.dest()),
            "--sni",
            &format!("*.b.example={}", b.dest()),
        ],
        1,
    );
    for (asked, expected) in [
        (Some("a.example"), "a.example"),
        (Some("A.EXAMPLE"), "a.example"),
        (Some("www.b.example"), "b.example"),
        (Some("unknown.example"), "default.example"),
        (None, "default.example"),
    ] {
        let output = handshake(&proxy, asked);
        assert_eq!(
            presented(&output),
            Some(expected),
            "asked for {asked:?}:\n{output}"
        );
    }
    let log = proxy.wait_for_log("SNI 'www.b.example'", Duration::from_secs(5));
    assert!(
        log.contains(&format!("-> {} (SNI 'www.b.example')", b.dest())),
        "{log}"
    );
}

#[test]
fn with_sni_only_an_unknown_name_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let a = TlsServer::start(dir.path(), "a.example");
    let proxy = Proxy::start(
        &[
            "-d",
            "-p",
            "0:127.0.0.1:9",
            "--sni",
            &format!("a.example={}", a.dest()),
            "--sni-only",
        ],
        1,
    );
    assert_eq!(
        presented(&handshake(&proxy, Some("a.example"))),
        Some("a.example")
    );
    let output = handshake(&proxy, Some("b.example"));
    assert_eq!(presented(&output), None, "{output}");
    proxy.wait_for_log(
        "no route for server name 'b.example'",
        Duration::from_secs(5),
    );
}
