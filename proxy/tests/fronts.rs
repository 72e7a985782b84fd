//! The reference's SOCKS5 and HTTP CONNECT fronts as an operator configures them: the
//! allow-list, the credentials file, names, and the accounting line. (That the fronts keep the
//! contract, the front cases included, is `conformance_modes.rs`'s to show.) Every destination
//! here is on loopback: a refused destination is a loopback port outside the allow-list, so a
//! front that dialed it anyway would be seen by that port's own listener.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::{echo_server, socks5, Proxy};

fn client(front: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(front).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// The status line of the answer to `CONNECT target`, read up to the end of its head.
fn http_connect(stream: &mut TcpStream, target: &str) -> String {
    write!(
        stream,
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).unwrap();
    text.lines().next().unwrap().to_string()
}

fn expect_closed(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing after the refusal: {rest:?}");
}

/// A listener that no one may reach through the front; it tells whether anyone connected.
fn forbidden_port() -> TcpListener {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    listener
}

fn nobody_connected(listener: &TcpListener) -> bool {
    matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

#[test]
fn the_allow_list_refuses_what_it_does_not_name_and_dials_nothing() {
    let allowed = echo_server();
    let forbidden = forbidden_port();
    let forbidden_port = forbidden.local_addr().unwrap().port();
    let proxy = Proxy::start(
        &[
            "--socks5",
            "0",
            "--http-connect",
            "0",
            "--allow",
            &format!("127.0.0.1:{}", allowed.port()),
            "-d",
        ],
        2,
    );
    let (socks, http) = (proxy.listening[0], proxy.listening[1]);

    let mut refused = client(socks);
    assert_eq!(
        socks5(&mut refused, "127.0.0.1", forbidden_port, None),
        0x02,
        "SOCKS5 'not allowed by ruleset'"
    );
    expect_closed(&mut refused);
    let mut refused = client(http);
    assert_eq!(
        http_connect(&mut refused, &format!("127.0.0.1:{forbidden_port}")),
        "HTTP/1.1 403 Forbidden"
    );
    expect_closed(&mut refused);

    let mut through = client(socks);
    assert_eq!(socks5(&mut through, "127.0.0.1", allowed.port(), None), 0);
    through.write_all(b"allowed").unwrap();
    let mut echo = [0u8; 7];
    through.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"allowed");
    drop(through);
    // The accounting line names the destination the client asked for.
    let log = proxy.wait_for_log(
        &format!("-> 127.0.0.1:{} (SOCKS5): up 7 B, down 7 B", allowed.port()),
        Duration::from_secs(10),
    );
    assert!(
        log.contains(&format!(
            "-> 127.0.0.1:{forbidden_port} (HTTP CONNECT): up 0 B, down 0 B"
        )) && log.contains("destination not allowed"),
        "{log}"
    );
    assert!(
        nobody_connected(&forbidden),
        "the front dialed a destination outside its allow-list"
    );
}

#[test]
fn a_name_is_resolved_and_then_checked_against_the_allow_list() {
    let echo = echo_server();
    // Default allow-list: loopback. `localhost` comes from /etc/hosts, as in the other tests.
    let proxy = Proxy::start(&["--socks5", "0"], 1);
    let mut stream = client(proxy.listening[0]);
    assert_eq!(socks5(&mut stream, "localhost", echo.port(), None), 0);
    stream.write_all(b"by name").unwrap();
    let mut back = [0u8; 7];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"by name");
}

#[test]
fn credentials_from_a_file_are_required_and_never_logged() {
    let echo = echo_server();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("front-credentials");
    std::fs::write(&file, "alice:Sesame-0pen\n").unwrap();
    let proxy = Proxy::start(
        &[
            "--socks5",
            "0",
            "--front-credentials",
            file.to_str().unwrap(),
            "-d",
            "-v",
        ],
        1,
    );
    let front = proxy.listening[0];
    let mut wrong = client(front);
    assert_eq!(
        socks5(
            &mut wrong,
            "127.0.0.1",
            echo.port(),
            Some(("alice", "sesame-0pen"))
        ),
        0xff,
        "a wrong password is rejected"
    );
    expect_closed(&mut wrong);
    let mut right = client(front);
    assert_eq!(
        socks5(
            &mut right,
            "127.0.0.1",
            echo.port(),
            Some(("alice", "Sesame-0pen"))
        ),
        0
    );
    right.write_all(b"in").unwrap();
    let mut back = [0u8; 2];
    right.read_exact(&mut back).unwrap();
    drop(right);
    let log = proxy.wait_for_log("up 2 B, down 2 B", Duration::from_secs(10));
    assert!(
        !log.contains("Sesame-0pen"),
        "the password was logged:\n{log}"
    );

    // Without its file the front does not start, and says why.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tprox-relay"))
        .args(["--socks5", "0", "--front-credentials"])
        .arg(dir.path().join("missing"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot read credentials file"), "{stderr}");
}
