//! The PROXY protocol (haproxy's `doc/proxy-protocol.txt`), both ways:
//!
//! * the header the proxy sends first on each connection it opens to a destination
//!   (`--send-proxy v1|v2`), so that the destination learns the client's address and port and
//!   the address the client connected to; written before any byte of the client's, in one write;
//! * the header it reads first from each client (`--accept-proxy`), when it stands behind
//!   another proxy that sends one: either version, read exactly (never a byte of the client's
//!   stream with it), within the stall timeout, and a connection that starts otherwise is
//!   closed: the specification forbids guessing whether a header is there.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpStream;

/// Which header to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum SendProxy {
    /// The text form: `PROXY TCP4 SRC DST SPORT DPORT\r\n` (section 2.1).
    V1,
    /// The binary form (section 2.2): signature, PROXY command, TCP over IPv4 or IPv6.
    V2,
}

/// The v2 signature (section 2.2).
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

impl SendProxy {
    /// The header for a client at `source` that connected to `destination` (the proxy's own
    /// listening address as the client reached it). Both must be of one family: an IPv4
    /// client of a dual-stack listener is given as IPv4 on both sides.
    pub fn header(self, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
        let (source, destination) = (unmapped(source), unmapped(destination));
        let same_family = source.is_ipv4() == destination.is_ipv4();
        match self {
            SendProxy::V1 if !same_family => b"PROXY UNKNOWN\r\n".to_vec(),
            SendProxy::V1 => format!(
                "PROXY {} {} {} {} {}\r\n",
                if source.is_ipv4() { "TCP4" } else { "TCP6" },
                source.ip(),
                destination.ip(),
                source.port(),
                destination.port()
            )
            .into_bytes(),
            SendProxy::V2 => {
                let mut header = SIGNATURE.to_vec();
                // Version 2, PROXY.
                header.push(0x21);
                let mut addresses = Vec::new();
                match (source, destination) {
                    (SocketAddr::V4(s), SocketAddr::V4(d)) => {
                        header.push(0x11);
                        addresses.extend_from_slice(&s.ip().octets());
                        addresses.extend_from_slice(&d.ip().octets());
                    }
                    (SocketAddr::V6(s), SocketAddr::V6(d)) => {
                        header.push(0x21);
                        addresses.extend_from_slice(&s.ip().octets());
                        addresses.extend_from_slice(&d.ip().octets());
                    }
                    // No common family: AF_UNSPEC, no addresses (2.2).
                    _ => header.push(0x00),
                }
                if !addresses.is_empty() {
                    addresses.extend_from_slice(&source.port().to_be_bytes());
                    addresses.extend_from_slice(&destination.port().to_be_bytes());
                }
                header.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
                header.extend_from_slice(&addresses);
                header
            }
        }
    }
}

/// What a received header says: the client and the address it connected to, as the sending
/// proxy saw them; `None` where the header gives none to use (LOCAL, UNKNOWN, AF_UNSPEC or a
/// UNIX socket's), and the connection's real endpoints stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The client's address and port.
    pub source: Option<SocketAddr>,
    /// The address and port the client connected to.
    pub destination: Option<SocketAddr>,
}

/// The longest v1 line, CRLF included (section 2.1).
const V1_MAX: usize = 107;

/// Reads the header at the start of `client`, of either version, within `limit`. Reads no byte
/// beyond it: every read asks for no more than the header can still be, so the client's stream
/// after it (a front's handshake included) is untouched.
pub async fn read(client: &TcpStream, limit: Duration) -> io::Result<Received> {
    match tokio::time::timeout(limit, read_any(client)).await {
        Ok(result) => result,
        Err(_) => Err(invalid(
            "no complete PROXY protocol header within the stall timeout",
        )),
    }
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

async fn read_any(client: &TcpStream) -> io::Result<Received> {
    let mut bytes = Vec::with_capacity(V1_MAX);
    read_up_to(client, &mut bytes, 1).await?;
    match bytes[0] {
        b'P' => read_v1(client, bytes).await,
        b'\r' => read_v2(client, bytes).await,
        _ => Err(invalid(
            "the connection starts with no PROXY protocol header",
        )),
    }
}

/// Reads until `bytes` holds `len` bytes; the end of the stream before that is an error.
async fn read_up_to(client: &TcpStream, bytes: &mut Vec<u8>, len: usize) -> io::Result<()> {
    while bytes.len() < len {
        client.readable().await?;
        let mut chunk = [0u8; 256];
        let want = (len - bytes.len()).min(chunk.len());
        match client.try_read(&mut chunk[..want]) {
            Ok(0) => return Err(invalid("the client closed before its header ended")),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn read_v1(client: &TcpStream, mut line: Vec<u8>) -> io::Result<Received> {
    // The shortest line is "PROXY UNKNOWN\r\n"; after that, the CRLF is at least the next
    // two bytes away, or one when the last byte read is its CR.
    read_up_to(client, &mut line, 15).await?;
    if !line.starts_with(b"PROXY ") {
        return Err(invalid(
            "the connection starts with no PROXY protocol header",
        ));
    }
    while !line.ends_with(b"\r\n") {
        let more = if line.ends_with(b"\r") { 1 } else { 2 };
        if line.len() + more > V1_MAX {
            return Err(invalid("a v1 header with no CRLF within 107 bytes"));
        }
        let want = line.len() + more;
        read_up_to(client, &mut line, want).await?;
    }
    let text = std::str::from_utf8(&line[6..line.len() - 2])
        .map_err(|_| invalid("a v1 header that is not text"))?;
    let fields: Vec<&str> = text.split(' ').collect();
    let none = Received {
        source: None,
        destination: None,
    };
    let parse = |ip: &str, port: &str, four: bool| -> Option<SocketAddr> {
        let ip: IpAddr = match four {
            true => ip.parse::<Ipv4Addr>().ok()?.into(),
            false => ip.parse::<Ipv6Addr>().ok()?.into(),
        };
        let digits =
            !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit());
        Some(SocketAddr::new(
            ip,
            digits.then(|| port.parse().ok()).flatten()?,
        ))
    };
    match fields[..] {
        ["UNKNOWN", ..] => Ok(none),
        [family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let four = family == "TCP4";
            match (parse(src, sport, four), parse(dst, dport, four)) {
                (Some(source), Some(destination)) => Ok(Received {
                    source: Some(source),
                    destination: Some(destination),
                }),
                _ => Err(invalid(
                    "a v1 header with addresses or ports that do not parse",
                )),
            }
        }
        _ => Err(invalid("a malformed v1 header")),
    }
}

async fn read_v2(client: &TcpStream, mut header: Vec<u8>) -> io::Result<Received> {
    read_up_to(client, &mut header, 16).await?;
    if header[..12] != SIGNATURE {
        return Err(invalid(
            "the connection starts with no PROXY protocol header",
        ));
    }
    let (version, command) = (header[12] >> 4, header[12] & 0x0f);
    let (family, protocol) = (header[13] >> 4, header[13] & 0x0f);
    if version != 2 || command > 1 || family > 3 || protocol > 2 {
        return Err(invalid(
            "a v2 header with an unknown version, command or family",
        ));
    }
    let len = usize::from(u16::from_be_bytes([header[14], header[15]]));
    read_up_to(client, &mut header, 16 + len).await?;
    let body = &header[16..];
    let none = Received {
        source: None,
        destination: None,
    };
    // LOCAL: a connection the sender made on its own; its addresses are discarded (2.2).
    if command == 0 {
        return Ok(none);
    }
    let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    match family {
        1 if body.len() >= 12 => {
            let ip = |at: usize| IpAddr::from([body[at], body[at + 1], body[at + 2], body[at + 3]]);
            Ok(Received {
                source: Some(SocketAddr::new(ip(0), port(8))),
                destination: Some(SocketAddr::new(ip(4), port(10))),
            })
        }
        2 if body.len() >= 36 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                IpAddr::from(octets)
            };
            Ok(Received {
                source: Some(SocketAddr::new(ip(0), port(32))),
                destination: Some(SocketAddr::new(ip(16), port(34))),
            })
        }
        1 | 2 => Err(invalid("a v2 header too short for its addresses")),
        _ => Ok(none),
    }
}

/// An IPv4 address seen through a dual-stack socket (`::ffff:a.b.c.d`) as the IPv4 it is.
fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads what `sent` (written a byte at a time when `split`) comes to, and what is left
    /// in the stream after it.
    async fn received(sent: Vec<u8>, split: bool) -> (io::Result<Received>, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let writer = tokio::spawn(async move {
            let mut client = TcpStream::connect(addr).await.unwrap();
            client.set_nodelay(true).unwrap();
            let pieces: Vec<Vec<u8>> = match split {
                true => sent.iter().map(|b| vec![*b]).collect(),
                false => vec![sent],
            };
            for piece in pieces {
                client.write_all(&piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            client.write_all(b"rest").await.unwrap();
        });
        let (mut stream, _) = listener.accept().await.unwrap();
        let result = read(&stream, Duration::from_secs(5)).await;
        writer.await.unwrap();
        let mut rest = Vec::new();
        if result.is_ok() {
            let mut buf = [0u8; 4];
            stream.read_exact(&mut buf).await.unwrap();
            rest.extend_from_slice(&buf);
        }
        (result, rest)
    }

    #[tokio::test]
    async fn a_header_of_either_version_is_read_exactly_however_it_is_split() {
        let (client, listener): (SocketAddr, SocketAddr) = (
            "127.88.0.1:40000".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
        );
        for version in [SendProxy::V1, SendProxy::V2] {
            for split in [false, true] {
                let (got, rest) = received(version.header(client, listener), split).await;
                let got = got.unwrap();
                assert_eq!(got.source, Some(client), "{version:?} split {split}");
                assert_eq!(got.destination, Some(listener));
                assert_eq!(rest, b"rest");
            }
        }
        let mut local = SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(received(local, false).await.0.unwrap().source, None);
        let unknown = b"PROXY UNKNOWN\r\n".to_vec();
        assert_eq!(received(unknown, true).await.0.unwrap().source, None);
    }

    #[tokio::test]
    async fn anything_but_a_valid_header_is_refused() {
        let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(100)).into_bytes();
        let mut wrong = SIGNATURE.to_vec();
        wrong[11] = b'\r';
        wrong.extend_from_slice(&[0x21, 0x11, 0, 0]);
        for bad in [
            long,
            wrong,
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            b"PROXI TCP4 127.0.0.1 127.0.0.1 1 2\r\n".to_vec(),
            b"PROXY TCP4 127.0.0.1 ::1 1 2\r\n".to_vec(),
        ] {
            let (got, _) = received(bad.clone(), false).await;
            assert!(got.is_err(), "{}", bad.escape_ascii());
        }
    }

    #[test]
    fn headers_carry_the_client_and_the_listener_in_each_form() {
        let (client, listener) = (
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.2:8080".parse().unwrap(),
        );
        assert_eq!(
            SendProxy::V1.header(client, listener),
            b"PROXY TCP4 127.0.0.1 127.0.0.2 40000 8080\r\n"
        );
        let v2 = SendProxy::V2.header(client, listener);
        assert_eq!(&v2[..12], &SIGNATURE);
        assert_eq!(&v2[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(
            &v2[16..],
            &[127, 0, 0, 1, 127, 0, 0, 2, 0x9c, 0x40, 0x1f, 0x90]
        );
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
        assert_eq!(
            SendProxy::V1.header(mapped, listener),
            b"PROXY TCP4 127.0.0.1 127.0.0.2 40000 8080\r\n"
        );
        let six: SocketAddr = "[::1]:5".parse().unwrap();
        assert_eq!(
            SendProxy::V1.header(six, six),
            b"PROXY TCP6 ::1 ::1 5 5\r\n"
        );
        assert_eq!(SendProxy::V2.header(six, six).len(), 16 + 36);
    }
}
