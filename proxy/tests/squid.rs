//! `--via`: tunnelling through a real HTTP proxy, squid, started here on loopback with a
//! generated configuration (Debian package `squid`; `.ci/run` installs it).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{echo_server, exchange, socks5, Proxy};

const SQUID: &str = "/usr/sbin/squid";
const USER: &str = "alice";
const PASSWORD: &str = "open sesame";

/// A squid on a free loopback port, in a process group of its own (with its helpers), killed
/// and reaped on drop.
struct Squid {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Squid {
    /// Starts squid allowing CONNECT to `allowed_ports` only (`9000`, `1-65535`), with Basic
    /// authentication when `auth` is set.
    fn start(allowed_ports: impl std::fmt::Display, auth: bool) -> Squid {
        tprox_suite::require(SQUID, "squid");
        let dir = tempfile::tempdir().unwrap();
        // squid started as root works as the `proxy` user: it must reach its files.
        set_mode(dir.path(), 0o777);
        let port = free_port();
        let d = dir.path().display();
        let mut conf = format!(
            "http_port 127.0.0.1:{port}\n\
             pid_filename {d}/squid.pid\n\
             cache_log {d}/cache.log\n\
             access_log stdio:{d}/access.log\n\
             cache deny all\n\
             cache_mem 8 MB\n\
             coredump_dir {d}\n\
             shutdown_lifetime 0 seconds\n\
             netdb_filename none\n\
             pinger_enable off\n\
             acl allowed_port port {allowed_ports}\n\
             http_access deny CONNECT !allowed_port\n"
        );
        if auth {
            let hash = Command::new("openssl")
                .args(["passwd", "-apr1", PASSWORD])
                .output()
                .expect("openssl makes the password file");
            let line = format!("{USER}:{}", String::from_utf8_lossy(&hash.stdout));
            write(&dir.path().join("passwd"), &line);
            conf.push_str(&format!(
                "auth_param basic program /usr/lib/squid/basic_ncsa_auth {d}/passwd\n\
                 auth_param basic realm tprox-relay-test\n\
                 acl authed proxy_auth REQUIRED\n\
                 http_access allow localhost authed\n"
            ));
        } else {
            conf.push_str("http_access allow localhost\n");
        }
        conf.push_str("http_access deny all\n");
        let conf_path = dir.path().join("squid.conf");
        write(&conf_path, &conf);
        // A service name of its own: squid names its shared-memory segments after it
        // (/dev/shm/NAME-cf__*.shm), and two squids under the default name collide on them.
        let child = Command::new(SQUID)
            .args(["-N", "-n", &service_name(port), "-f"])
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start squid");
        let mut squid = Squid { child, port, dir };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = squid.child.try_wait() {
                panic!("squid exited ({status}): {}", squid.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "squid did not listen: {}",
                squid.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
        squid
    }

    fn url(&self, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((user, pass)) => format!(
                "http://{user}:{}@127.0.0.1:{}",
                pass.replace(' ', "%20"),
                self.port
            ),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cache.log")).unwrap_or_default()
    }

    /// Waits until the reference proxy logs `text`; on timeout, fails with both sides' logs:
    /// what squid did is half of why the proxy logged something else. The wait ends as soon as
    /// the line comes; its bound is generous because squid answers a first request slowly
    /// while the catalogue runs through another squid on the same two cores (a 5 s bound
    /// failed once so).
    fn expect_proxy_log(&self, proxy: &Proxy, text: &str) -> String {
        proxy
            .log_within(text, Duration::from_secs(30))
            .unwrap_or_else(|log| {
                let access =
                    std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
                panic!(
                    "tprox-relay did not log '{text}' within 30 s; it logged:\n{log}\n\
                     squid's cache.log:\n{}\nsquid's access.log:\n{access}",
                    self.log()
                )
            })
    }

    /// squid writes its access log line when a tunnel closes.
    fn wait_for_access(&self, text: &str) -> String {
        let path: PathBuf = self.dir.path().join("access.log");
        let start = Instant::now();
        loop {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            if log.contains(text) {
                return log;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "squid's access log lacks '{text}': {log}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        // Killed, squid leaves its shared-memory segments behind; they are this instance's.
        let prefix = format!("{}-", service_name(self.port));
        if let Ok(entries) = std::fs::read_dir("/dev/shm") {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
}

/// The squid service name of the instance on `port`.
fn service_name(port: u16) -> String {
    format!("tproxtest{port}")
}

use std::os::unix::process::CommandExt;

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    set_mode(path, 0o644);
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects through the proxy and expects it to be closed without any data.
fn expect_closed(addr: SocketAddr) {
    let mut client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "a refused tunnel gave the client data: {got:?}"
    );
}

#[test]
fn connections_tunnel_through_squid() {
    let echo = echo_server();
    let squid = Squid::start(echo.port(), false);
    let proxy = Proxy::start(
        &[
            "-p",
            &format!("0:127.0.0.1:{}", echo.port()),
            "--via",
            &squid.url(None),
        ],
        1,
    );
    let message: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let back = exchange(proxy.listening[0], &message);
    assert!(
        back == message,
        "{} of {} bytes came back, or altered",
        back.len(),
        message.len()
    );
    squid.wait_for_access(&format!("CONNECT 127.0.0.1:{}", echo.port()));
}

#[test]
fn a_destination_that_speaks_first_is_heard_through_the_tunnel() {
    let greeter = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = greeter.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in greeter.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.write_all(b"220 hello\r\n");
        }
    });
    let squid = Squid::start(port, false);
    let proxy = Proxy::start(
        &[
            "-p",
            &format!("0:127.0.0.1:{port}"),
            "--via",
            &squid.url(None),
        ],
        1,
    );
    let mut client = TcpStream::connect(proxy.listening[0]).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut greeting = [0u8; 11];
    client.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting, b"220 hello\r\n");
}

#[test]
fn basic_authentication_with_the_right_password_and_a_wrong_one() {
    let echo = echo_server();
    let squid = Squid::start(echo.port(), true);
    let right = Proxy::start(
        &[
            "-p",
            &format!("0:127.0.0.1:{}", echo.port()),
            "--via",
            &squid.url(Some((USER, PASSWORD))),
        ],
        1,
    );
    assert_eq!(exchange(right.listening[0], b"authorised"), b"authorised");
    squid.wait_for_access(USER);

    let wrong = Proxy::start(
        &[
            "-p",
            &format!("0:127.0.0.1:{}", echo.port()),
            "--via",
            &squid.url(Some((USER, "guess"))),
        ],
        1,
    );
    expect_closed(wrong.listening[0]);
    let log = squid.expect_proxy_log(&wrong, "407");
    assert!(
        log.contains("HTTP proxy refused CONNECT: 407 Proxy Authentication Required"),
        "{log}"
    );
    assert!(
        !log.contains("guess"),
        "the password must not be logged: {log}"
    );

    let none = Proxy::start(
        &[
            "-p",
            &format!("0:127.0.0.1:{}", echo.port()),
            "--via",
            &squid.url(None),
        ],
        1,
    );
    expect_closed(none.listening[0]);
    squid.expect_proxy_log(&none, "407");
}

#[test]
fn a_forbidden_port_is_refused_with_its_status() {
    let echo = echo_server();
    let squid = Squid::start(free_port(), false);
    let proxy = Proxy::start(
        &[
            "-p",
            &format!("0:127.0.0.1:{}", echo.port()),
            "--via",
            &squid.url(None),
        ],
        1,
    );
    expect_closed(proxy.listening[0]);
    let log = squid.expect_proxy_log(&proxy, "refused CONNECT");
    assert!(log.contains("403 Forbidden"), "{log}");
}

#[test]
fn squid_down_closes_the_client_or_falls_back_to_a_direct_dial() {
    let echo = echo_server();
    let squid = Squid::start(echo.port(), false);
    let url = squid.url(None);
    drop(squid);
    let target = format!("0:127.0.0.1:{}", echo.port());

    let strict = Proxy::start(&["-p", &target, "--via", &url], 1);
    expect_closed(strict.listening[0]);
    let log = strict.wait_for_log("HTTP proxy unreachable", Duration::from_secs(30));
    assert!(log.contains("Connection refused"), "{log}");

    let lenient = Proxy::start(&["-p", &target, "--via", &url, "--direct-fallback"], 1);
    assert_eq!(exchange(lenient.listening[0], b"direct"), b"direct");
    lenient.wait_for_log("unreachable", Duration::from_secs(30));
    assert!(lenient
        .stderr()
        .contains(&format!("dialing 127.0.0.1:{} directly", echo.port())));
}

/// The whole catalogue through a tunnel, but for what squid itself does not do: its CONNECT
/// tunnel ends both directions at the first EOF (no half-close), and holds what a lazy client
/// does not read in buffers of its own, so the reverse stall reaches tprox-relay late or not at all.
#[test]
fn the_catalogue_passes_through_squid_apart_from_half_close() {
    let squid = Squid::start("1-65535", false);
    let url = squid.url(None);
    tprox_suite::Suite::new([
        env!("CARGO_BIN_EXE_tprox-relay"),
        "-p",
        "127.0.0.1:{listen_port}:{dest_host}:{dest_port}",
        "--via",
        url.as_str(),
        "--stall-timeout",
        "{stall_timeout}",
    ])
    .stall_timeout(Duration::from_secs(2))
    .skip("shutdown/one-way")
    .skip("shutdown/reverse")
    .skip("shutdown/idle-half-closed")
    .skip("timeout/lazy-reverse")
    .run()
    .assert_conforms();
}

/// A front's client names its destination; with `--via`, that destination is reached through
/// the HTTP proxy (squid's access log shows the CONNECT), not dialed directly.
#[test]
fn a_socks5_front_reaches_its_destinations_through_squid() {
    let echo = echo_server();
    let squid = Squid::start(echo.port(), false);
    let proxy = Proxy::start(&["--socks5", "0", "--via", &squid.url(None)], 1);
    let mut client = TcpStream::connect(proxy.listening[0]).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        socks5(&mut client, "127.0.0.1", echo.port(), None),
        0,
        "the front's reply"
    );
    // Read before closing: squid's tunnel ends both directions at the first EOF.
    client.write_all(b"through squid").unwrap();
    let mut back = [0u8; 13];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"through squid");
    drop(client);
    squid.wait_for_access(&format!("CONNECT 127.0.0.1:{}", echo.port()));
}
