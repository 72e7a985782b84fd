//! `tprox peer` end to end, through the reference proxy: each mode on the listening side and
//! on the connecting side, their byte counts, and bad input.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const TPROX: &str = env!("CARGO_BIN_EXE_tprox");

/// A background process whose stderr (and stdout) lines are collected; killed on drop.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(TPROX)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Running { child, lines }
    }

    fn wait_for(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no line with '{text}' in {:?}",
                self.lines.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn interrupt(&mut self) -> i32 {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        let status = self.child.wait().unwrap();
        thread::sleep(Duration::from_millis(100)); // the readers take the last lines
        status.code().unwrap_or(-1)
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A listening peer on a free port, and the reference proxy in front of it; returns both and
/// the proxy's address.
fn peer_behind_proxy(args: &[&str]) -> (Running, Running, String) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut peer_args = args.to_vec();
    peer_args.extend(["--listen", &listen]);
    let peer = Running::start(&peer_args);
    peer.wait_for("127.0.0.1");
    let mapping = format!("0:127.0.0.1:{port}");
    let proxy = Running::start(&["__reference-proxy", "-p", &mapping]);
    let line = proxy.wait_for("Listening on ");
    let addr = line.trim_start_matches("Listening on ").to_string();
    (peer, proxy, addr)
}

fn run(args: &[&str]) -> (i32, String) {
    let output = Command::new(TPROX).args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn sources_through_the_proxy_are_echoed_and_counted_on_both_sides() {
    let (mut echo, _proxy, addr) = peer_behind_proxy(&["peer", "echo"]);
    let (code, out) = run(&[
        "peer",
        "source",
        "--connect",
        &format!("{addr}x3"),
        "--bytes",
        "100000",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.matches("100000 B received, 100000 B sent").count(),
        3,
        "{out}"
    );
    assert!(
        out.contains("3 connection(s), 300000 B received, 300000 B sent"),
        "{out}"
    );
    assert_eq!(echo.interrupt(), 130);
    assert!(
        echo.text()
            .contains("3 connection(s), 300000 B received, 300000 B sent"),
        "{}",
        echo.text()
    );
}

/// A UDP echo peer behind the reference's UDP forwarding: three UDP sources, each its own
/// session, get back what they sent; the echo counts each sender apart.
#[test]
fn udp_sources_through_the_proxy_are_echoed_and_counted_on_both_sides() {
    let port = free_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let mut echo = Running::start(&["peer", "echo", "--udp", "--listen", &listen]);
    echo.wait_for("listening on udp 127.0.0.1");
    let mapping = format!("udp:0:127.0.0.1:{port}");
    let proxy = Running::start(&["__reference-proxy", "-p", &mapping]);
    let line = proxy.wait_for("Listening on udp ");
    let addr = line.trim_start_matches("Listening on udp ").to_string();
    let (code, out) = run(&[
        "peer",
        "source",
        "--udp",
        "--connect",
        &format!("{addr}x3"),
        "--bytes",
        "20000",
        "--idle",
        "1",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.matches("20000 B received, 20000 B sent").count(),
        3,
        "{out}"
    );
    assert_eq!(echo.interrupt(), 130);
    assert!(
        echo.text()
            .contains("3 connection(s), 60000 B received, 60000 B sent"),
        "{}",
        echo.text()
    );
}

/// A TCP hub: what one member sends reaches every other member, and not itself.
#[test]
fn a_hub_relays_each_members_bytes_to_the_others() {
    use std::io::{Read, Write};
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _hub = Running::start(&["peer", "hub", "--listen", &listen]);
    _hub.wait_for("listening on 127.0.0.1");
    let members: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(&listen).unwrap())
        .collect();
    for member in &members {
        member
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
    }
    // Once the hub has said that the third joined, every member is relayed to.
    _hub.wait_for("member 3");
    (&members[0]).write_all(b"hello hub\n").unwrap();
    for member in &members[1..] {
        let mut got = [0u8; 10];
        (&*member).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello hub\n");
    }
    members[0]
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut nothing = [0u8; 1];
    assert!(
        (&members[0]).read(&mut nothing).is_err(),
        "the sender got its own bytes back"
    );
}

/// A UDP hub: a datagram from one sender reaches every other sender it has seen.
#[test]
fn a_udp_hub_relays_each_datagram_to_the_other_senders() {
    let port = free_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let _hub = Running::start(&["peer", "hub", "--udp", "--listen", &listen]);
    _hub.wait_for("listening on udp 127.0.0.1");
    let members: Vec<UdpSocket> = (0..3)
        .map(|_| {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.connect(&listen).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            socket
        })
        .collect();
    // Each joins by speaking; the earlier ones hear the later ones join. The hub reads one
    // socket, in the order the datagrams were sent: it has seen every sender when the last
    // datagram comes.
    for (i, member) in members.iter().enumerate() {
        member.send(format!("join {i}").as_bytes()).unwrap();
    }
    members[2].send(b"from 2").unwrap();
    for (i, member) in members[..2].iter().enumerate() {
        let mut buf = [0u8; 64];
        let mut heard = Vec::new();
        while let Ok(n) = member.recv(&mut buf) {
            heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            if heard.last().is_some_and(|text| text == "from 2") || heard.len() > 4 {
                break;
            }
        }
        assert_eq!(
            heard.last().map(String::as_str),
            Some("from 2"),
            "member {i}: {heard:?}"
        );
        assert!(
            heard[..heard.len() - 1]
                .iter()
                .all(|text| text.starts_with("join")),
            "member {i}: {heard:?}"
        );
    }
}

#[test]
fn a_greeting_reaches_each_client_first() {
    let (_greet, _proxy, addr) =
        peer_behind_proxy(&["peer", "greet", "--greeting", "220 ready\r\n"]);
    let (code, out) = run(&[
        "peer",
        "sink",
        "--connect",
        &format!("{addr}x2"),
        "--close-after",
        "11",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches("11 B received, 0 B sent").count(), 2, "{out}");
    assert_eq!(
        out.matches("closed after 11 B received").count(),
        2,
        "{out}"
    );
}

#[test]
fn a_refusing_destination_closes_the_client_and_refuses_direct_connections() {
    let (refuse, _proxy, addr) = peer_behind_proxy(&["peer", "refuse"]);
    let (code, out) = run(&["peer", "sink", "--connect", &addr]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 B received, 0 B sent"), "{out}");
    let held = refuse
        .wait_for("holding")
        .split_whitespace()
        .nth(3)
        .unwrap()
        .to_string();
    let (code, out) = run(&["peer", "sink", "--connect", &held]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("Connection refused"), "{out}");
}

#[test]
fn a_resetting_destination_resets_after_its_bytes() {
    let (reset, _proxy, addr) = peer_behind_proxy(&["peer", "reset", "--reset-after", "10"]);
    let (_, out) = run(&["peer", "source", "--connect", &addr, "--bytes", "10000000"]);
    assert!(
        out.contains("reset") || out.contains("Broken pipe"),
        "the client sees the reset: {out}"
    );
    reset.wait_for("reset after 10 B received");
}

#[test]
fn a_peer_that_stops_reading_holds_back_the_source() {
    let (_sink, _proxy, addr) =
        peer_behind_proxy(&["peer", "sink", "--stop-reading-after", "1000"]);
    let mut source =
        Running::start(&["peer", "source", "--connect", &addr, "--bytes", "200000000"]);
    thread::sleep(Duration::from_secs(2));
    assert!(
        source.child.try_wait().unwrap().is_none(),
        "200 MB went through a peer that stopped reading"
    );
    assert_eq!(source.interrupt(), 130);
    let text = source.text();
    let sent: u64 = text
        .split(", ")
        .find_map(|part| part.strip_suffix(" B sent"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        sent < 100_000_000,
        "backpressure held the source to what buffers take: {text}"
    );
}

/// Channels: each inbound peer gets an outbound partner of its own, dialled again until the
/// destination is up; each hears its own partner only, and the ends are passed on.
#[test]
fn channels_pair_each_inbound_peer_with_an_outbound_one_dialled_until_it_is_up() {
    let (port, target) = (free_port(), format!("127.0.0.1:{}", free_port()));
    let listen = format!("127.0.0.1:{port}");
    let mut channels = Running::start(&[
        "peer",
        "channels",
        "--listen",
        &listen,
        "--connect",
        &target,
    ]);
    channels.wait_for("listening on 127.0.0.1");
    // Both clients come in while nothing listens at the target yet.
    let clients: Vec<std::net::TcpStream> = (0..2)
        .map(|i| {
            let mut c = std::net::TcpStream::connect(&listen).unwrap();
            c.write_all(format!("client {i}\n").as_bytes()).unwrap();
            c.shutdown(std::net::Shutdown::Write).unwrap();
            c
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let mut echo = Running::start(&["peer", "echo", "--listen", &target]);
    for (i, mut c) in clients.into_iter().enumerate() {
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert_eq!(
            got,
            format!("client {i}\n"),
            "each hears its own partner only"
        );
    }
    channels.wait_for("channel 2 (");
    assert_eq!(channels.interrupt(), 130);
    let text = channels.text();
    assert_eq!(text.matches("both sides done").count(), 2, "{text}");
    assert!(
        text.contains("2 connection(s), 18 B received, 18 B sent"),
        "{text}"
    );
    echo.interrupt();
    assert!(echo.text().contains("2 connection(s)"), "{}", echo.text());
}

/// A partner's reset resets its inbound peer; a partner never reached resets it after --redial.
#[test]
fn channels_pass_a_reset_on_and_give_up_on_a_partner_after_redial() {
    let target_port = free_port();
    let target = format!("127.0.0.1:{target_port}");
    let _reset = Running::start(&["peer", "reset", "--listen", &target]);
    _reset.wait_for("listening on");
    let listen = format!("127.0.0.1:{}", free_port());
    let channels = Running::start(&[
        "peer",
        "channels",
        "--listen",
        &listen,
        "--connect",
        &target,
    ]);
    channels.wait_for("listening on");
    let mut c = std::net::TcpStream::connect(&listen).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = c.write_all(b"x");
    let mut buf = [0u8; 16];
    let err = c
        .read(&mut buf)
        .expect_err("the partner's reset is passed on");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    channels.wait_for("reset by the other side");

    let nowhere = format!("127.0.0.1:{}", free_port());
    let listen = format!("127.0.0.1:{}", free_port());
    let lonely = Running::start(&[
        "peer",
        "channels",
        "--listen",
        &listen,
        "--connect",
        &nowhere,
        "--redial",
        "0.3",
    ]);
    lonely.wait_for("listening on");
    let started = Instant::now();
    let mut c = std::net::TcpStream::connect(&listen).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let err = c.read(&mut buf).expect_err("no partner: reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "dialled again first"
    );
    let line = lonely.wait_for("no partner");
    assert!(line.contains(&nowhere), "{line}");
}

/// UDP channels: a socket of its own towards the destination per sender, replies to that
/// sender alone, and the channel ended after --idle.
#[test]
fn udp_channels_keep_each_senders_replies_apart_and_end_when_idle() {
    let target = format!("127.0.0.1:{}", free_udp_port());
    let _echo = Running::start(&["peer", "echo", "--udp", "--listen", &target]);
    _echo.wait_for("listening on udp");
    let listen = format!("127.0.0.1:{}", free_udp_port());
    let channels = Running::start(&[
        "peer",
        "channels",
        "--udp",
        "--listen",
        &listen,
        "--connect",
        &target,
        "--idle",
        "1",
    ]);
    channels.wait_for("listening on udp");
    let clients: Vec<UdpSocket> = (0..3)
        .map(|_| {
            let c = UdpSocket::bind("127.0.0.1:0").unwrap();
            c.connect(&listen).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c
        })
        .collect();
    for round in 0..3 {
        for (i, c) in clients.iter().enumerate() {
            c.send(format!("{round} from {i}").as_bytes()).unwrap();
        }
        for (i, c) in clients.iter().enumerate() {
            let mut buf = [0u8; 64];
            let len = c.recv(&mut buf).unwrap();
            assert_eq!(&buf[..len], format!("{round} from {i}").as_bytes());
        }
    }
    assert!(channels.wait_for("channel 3:").contains("paired with udp"));
    let line = channels.wait_for("nothing for 1.0 s");
    assert!(line.contains("B in, ") && line.contains("B back"), "{line}");
    // Three channels, each with one socket: the echo saw three senders.
    assert!(_echo.wait_for("sender 3").contains("first datagram"));
    assert!(!_echo.text().contains("sender 4"), "{}", _echo.text());
}

#[test]
fn bad_input_is_a_usage_error() {
    for (args, says) in [
        (
            &["peer", "refuse", "--connect", "127.0.0.1:9"][..],
            "refuse is for a listening peer",
        ),
        (&["peer", "echo", "--listen", "nine"], "is not [ADDR:]PORT"),
        (
            &["peer", "echo", "--connect", "127.0.0.1"],
            "is not HOST:PORT[xN]",
        ),
        (&["peer", "echo"], "--listen"),
        (&["peer", "shout", "--listen", "9"], "invalid value 'shout'"),
        (
            &["peer", "hub", "--connect", "127.0.0.1:9"],
            "hub is for a listening peer",
        ),
        (
            &["peer", "reset", "--udp", "--listen", "9"],
            "refuse and reset are for TCP",
        ),
        (
            &["peer", "channels", "--listen", "9"],
            "channels needs both sides",
        ),
        (
            &["peer", "channels", "--connect", "127.0.0.1:9"],
            "channels needs both sides",
        ),
        (
            &[
                "peer",
                "channels",
                "--listen",
                "9",
                "--connect",
                "127.0.0.1:9x3",
            ],
            "without xN",
        ),
        (
            &["peer", "echo", "--listen", "9", "--connect", "127.0.0.1:9"],
            "not both",
        ),
        (
            &["peer", "echo", "--udp", "--listen", "9", "--idle", "0"],
            "--idle 0: give seconds",
        ),
    ] {
        let (code, out) = run(args);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(out.contains(says), "{args:?}: {out}");
    }
}
