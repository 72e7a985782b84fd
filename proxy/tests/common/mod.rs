//! Helpers for the proxy's end-to-end tests: start `tprox-relay` and learn its ports from its
//! `Listening on` lines, run small servers, and stop everything by process id.

#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// A running `tprox-relay`, killed and reaped on drop.
pub struct Proxy {
    pub child: Child,
    /// The listeners, in the order of the mappings.
    pub listening: Vec<SocketAddr>,
    stderr: Arc<Mutex<String>>,
}

impl Proxy {
    /// Starts `tprox-relay ARGS` (through `sh -c` with `prefix` when given, e.g. `ulimit -n 64;`)
    /// and waits for `listeners` `Listening on` lines.
    pub fn start(args: &[&str], listeners: usize) -> Proxy {
        Self::start_with(None, args, listeners)
    }

    pub fn start_with(shell_prefix: Option<&str>, args: &[&str], listeners: usize) -> Proxy {
        let exe = env!("CARGO_BIN_EXE_tprox-relay");
        let mut command = match shell_prefix {
            None => {
                let mut c = Command::new(exe);
                c.args(args);
                c
            }
            Some(prefix) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("{prefix} exec \"$0\" \"$@\""))
                    .arg(exe)
                    .args(args);
                c
            }
        };
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tprox-relay");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut listening = Vec::new();
        while listening.len() < listeners {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                let _ = child.wait();
                thread::sleep(Duration::from_millis(100));
                panic!(
                    "tprox-relay ended before listening: {}",
                    stderr.lock().unwrap()
                );
            };
            let addr = line
                .strip_prefix("Listening on ")
                .unwrap_or_else(|| panic!("unexpected stdout line: {line}"));
            listening.push(addr.parse().expect("an address"));
        }
        thread::spawn(move || for _ in lines {});
        Proxy {
            child,
            listening,
            stderr,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `text`, for at most `limit`.
    pub fn wait_for_log(&self, text: &str, limit: Duration) -> String {
        self.log_within(text, limit).unwrap_or_else(|log| {
            panic!("tprox-relay did not log '{text}' within {limit:?}; it logged:\n{log}")
        })
    }

    /// Stderr once it contains `text`; what it holds instead if `limit` passes first.
    #[allow(dead_code)] // not every test binary that shares this module uses it
    pub fn log_within(&self, text: &str, limit: Duration) -> Result<String, String> {
        let start = Instant::now();
        loop {
            let log = self.stderr();
            if log.contains(text) {
                return Ok(log);
            }
            if start.elapsed() >= limit {
                return Err(log);
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal tprox-relay");
    }

    /// Waits for the proxy to exit by itself, for at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "tprox-relay did not exit within {limit:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An echo server on loopback: one thread per connection, echoes until EOF, then closes.
pub fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Sends `message` through `addr`, shuts down, and returns everything read back.
pub fn round_trip(addr: SocketAddr, message: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(message).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).expect("read the echo");
    back
}

/// Sends `message` through `addr` and reads the same number of bytes back, without
/// half-closing: for paths (such as an HTTP CONNECT tunnel) that end both directions at the
/// first EOF.
pub fn exchange(addr: SocketAddr, message: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        let message = message.to_vec();
        thread::spawn(move || stream.write_all(&message))
    };
    let mut back = vec![0u8; message.len()];
    let read = stream.read_exact(&mut back);
    writer.join().unwrap().expect("write through the proxy");
    read.map(|()| back).unwrap_or_default()
}

/// A SOCKS5 client's handshake on `stream` for `host` (an IPv4 address, or a name) and
/// `port`, with `credentials` if given: the reply code, or what the front did instead.
pub fn socks5(
    stream: &mut TcpStream,
    host: &str,
    port: u16,
    credentials: Option<(&str, &str)>,
) -> u8 {
    let method = if credentials.is_some() { 2 } else { 0 };
    stream.write_all(&[5, 1, method]).unwrap();
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).unwrap();
    assert_eq!(choice, [5, method], "the method choice");
    if let Some((user, pass)) = credentials {
        let mut auth = vec![1, user.len() as u8];
        auth.extend_from_slice(user.as_bytes());
        auth.push(pass.len() as u8);
        auth.extend_from_slice(pass.as_bytes());
        stream.write_all(&auth).unwrap();
        let mut status = [0u8; 2];
        stream.read_exact(&mut status).unwrap();
        if status[1] != 0 {
            return 0xff;
        }
    }
    let mut request = vec![5, 1, 0];
    match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            request.extend_from_slice(&[3, host.len() as u8]);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).unwrap();
    let mut reply = [0u8; 10]; // the reference always binds an IPv4 address in its reply
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(reply[0], 5, "a SOCKS5 reply");
    reply[1]
}
