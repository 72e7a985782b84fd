//! The PROXY protocol (haproxy's `doc/proxy-protocol.txt`): the header a forwarder configured to
//! send it writes first on every connection it opens to the destination, telling the
//! destination who the client was. Version 1 is a line of text, version 2 a binary block.
//!
//! With `--proxy-protocol send:v1|v2`, tprox's destination reads the header of every connection
//! it accepts here ([`read`]), and the case runs on the rest of the stream unchanged; the
//! `proxy-protocol/` cases judge the headers themselves. The parser is written from the
//! specification alone, apart from any sender (the reference proxy's included), so that a
//! checker and a sender never share a mistake.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A version of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Text: `PROXY TCP4 SRC DST SPORT DPORT\r\n` (section 2.1).
    V1,
    /// Binary: a 12-byte signature, then version, command, family and the addresses (2.2).
    V2,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

/// The run mode `--proxy-protocol` names: which way the proxy speaks the protocol. A proxy
/// may do both, as a chained proxy does: accept a header from the client side and send one of
/// its own, carrying the client the first one named, to the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    /// `accept:VERSION`: the proxy expects a header of this version first on every client
    /// connection, so tprox's clients send one.
    pub accept: Option<Version>,
    /// `send:VERSION`: the proxy writes a header of this version first on every connection it
    /// opens to the destination, which tprox's destination reads and checks.
    pub send: Option<Version>,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let wrong = |why: String| {
            format!(
                "'{text}' is no PROXY protocol mode: {why}. Give send:v1 or send:v2 (the proxy \
                 sends the header to the destination), accept:v1 or accept:v2 (it expects one \
                 from its clients), or one of each joined by a comma (accept:v2,send:v1)"
            )
        };
        let mut mode = Mode {
            accept: None,
            send: None,
        };
        for part in text.split(',') {
            let (way, version) = part
                .split_once(':')
                .ok_or_else(|| wrong(format!("'{part}' has no ':'")))?;
            let version = match version {
                "v1" => Version::V1,
                "v2" => Version::V2,
                _ => return Err(wrong(format!("'{version}' is no version (v1, v2)"))),
            };
            let slot = match way {
                "send" => &mut mode.send,
                "accept" => &mut mode.accept,
                _ => return Err(wrong(format!("'{way}' is neither send nor accept"))),
            };
            if slot.replace(version).is_some() {
                return Err(wrong(format!("{way} is given twice")));
            }
        }
        Ok(mode)
    }
}

impl Mode {
    /// The mode as a clause about the proxy, for the line that says what runs: ", which
    /// accepts PROXY protocol v2 headers and sends v1 ones".
    pub fn described(&self) -> String {
        match (self.accept, self.send) {
            (Some(accept), Some(send)) => {
                format!(", which accepts PROXY protocol {accept} headers and sends {send} ones")
            }
            (Some(accept), None) => format!(", which accepts PROXY protocol {accept} headers"),
            (None, Some(send)) => format!(", which sends PROXY protocol {send} headers"),
            (None, None) => String::new(),
        }
    }

    /// The reference proxy's options for this mode: it accepts either version.
    pub fn reference_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.accept.is_some() {
            args.push("--accept-proxy".to_string());
        }
        if let Some(send) = self.send {
            args.extend(["--send-proxy".to_string(), send.to_string()]);
        }
        args
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.accept, self.send) {
            (Some(accept), Some(send)) => write!(f, "accept:{accept},send:{send}"),
            (Some(accept), None) => write!(f, "accept:{accept}"),
            (None, Some(send)) => write!(f, "send:{send}"),
            (None, None) => f.write_str("none"),
        }
    }
}

/// The v2 signature (section 2.2): a sequence no text protocol starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The longest v1 line, CRLF included (section 2.1): `PROXY UNKNOWN` with two IPv6 addresses.
pub const V1_MAX: usize = 107;

/// The command of a v2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// A connection relayed for a client: the addresses are the client's.
    Proxy,
    /// A connection the proxy made on its own (a health check): no addresses to trust.
    Local,
}

/// A header as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The version it was read as.
    pub version: Version,
    /// PROXY, or (v2 only) LOCAL.
    pub command: Command,
    /// The client's address and port, as the proxy saw it; `None` for `UNKNOWN` (v1) or a
    /// family without addresses (v2).
    pub source: Option<SocketAddr>,
    /// The address and port the client connected to, the proxy's listener.
    pub destination: Option<SocketAddr>,
    /// The header's bytes, for a diagnostic.
    pub raw: Vec<u8>,
}

/// What tprox's destination found at the start of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A well-formed header, read off the stream.
    Header(Header),
    /// A header that breaks the specification: what is wrong. Its bytes were read off the
    /// stream as far as its end could be told.
    Malformed(String),
    /// The connection does not start with a header of the version expected: what came (or
    /// that nothing did). Those bytes were left in the stream.
    Missing(String),
}

/// How often a header that has begun to arrive is looked at again for the rest.
const POLL: Duration = Duration::from_millis(5);

/// Reads the header at the start of `stream`, of either version (its first byte tells which),
/// waiting up to `limit` for it. Either is read off, so that a proxy sending the other version
/// than the run expects costs the header case only, not every case's stream.
pub async fn read(stream: &mut TcpStream, limit: Duration) -> Found {
    let deadline = Instant::now() + limit;
    // Up to 16 bytes are looked at, so that a connection that starts otherwise is shown.
    let first = peek_until(stream, deadline, 16, |seen| match seen.first() {
        Some(b'P') | Some(b'\r') => Some(Ok(1)),
        Some(_) => Some(Err(format!(
            "the connection starts {}, neither \"PROXY \" nor the v2 signature",
            show(seen)
        ))),
        None => None,
    })
    .await;
    let mut byte = [0u8; 1];
    match first {
        Err(found) => found,
        Ok(_) => match stream.peek(&mut byte).await {
            Ok(1) if byte[0] == b'P' => read_v1(stream, deadline).await,
            _ => read_v2(stream, deadline).await,
        },
    }
}

/// Looks at what has arrived without taking it, until `enough` says how many bytes the header
/// is (`Some`), or that it is no header (`Err`); `None` asks for more.
async fn peek_until(
    stream: &mut TcpStream,
    deadline: Instant,
    most: usize,
    enough: impl Fn(&[u8]) -> Option<Result<usize, String>>,
) -> Result<usize, Found> {
    let mut buf = vec![0u8; most];
    let mut seen = 0;
    loop {
        match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Err(e)) => return Err(Found::Missing(format!("the connection failed: {e}"))),
            Ok(Ok(0)) => {
                return Err(Found::Missing(
                    "the connection ended before any byte came".into(),
                ))
            }
            Ok(Ok(got)) => seen = got,
            Err(_) => {}
        }
        if let Some(decided) = enough(&buf[..seen]) {
            return decided.map_err(Found::Missing);
        }
        if Instant::now() >= deadline {
            return Err(match seen {
                0 => Found::Missing("nothing came within the time limit".into()),
                _ => Found::Malformed(format!(
                    "an incomplete header: {} and nothing more within the time limit",
                    show(&buf[..seen])
                )),
            });
        }
        // The bytes that came stay readable: look again once more may have come.
        tokio::time::sleep(POLL).await;
    }
}

/// Reads the `len` bytes the header was found to take off the stream, and checks them.
async fn take_parsed(
    stream: &mut TcpStream,
    len: Result<usize, Found>,
    parse: fn(&[u8]) -> Result<Header, String>,
) -> Found {
    let len = match len {
        Ok(len) => len,
        Err(found) => return found,
    };
    let mut raw = vec![0u8; len];
    if let Err(e) = stream.read_exact(&mut raw).await {
        return Found::Malformed(format!("reading the header failed: {e}"));
    }
    match parse(&raw) {
        Ok(header) => Found::Header(header),
        Err(why) => Found::Malformed(why),
    }
}

async fn read_v1(stream: &mut TcpStream, deadline: Instant) -> Found {
    const PREFIX: &[u8] = b"PROXY ";
    let len = peek_until(stream, deadline, V1_MAX + 1, |seen| {
        let start = &seen[..seen.len().min(PREFIX.len())];
        if !PREFIX.starts_with(start) {
            return Some(Err(format!("the connection starts {}", show(seen))));
        }
        match seen.windows(2).position(|w| w == b"\r\n") {
            Some(at) => Some(Ok(at + 2)),
            // Read as far as the limit allows, so that the stream goes on after it.
            None if seen.len() > V1_MAX => Some(Ok(V1_MAX + 1)),
            None => None,
        }
    })
    .await;
    take_parsed(stream, len, parse_v1).await
}

async fn read_v2(stream: &mut TcpStream, deadline: Instant) -> Found {
    let len = peek_until(stream, deadline, 16 + usize::from(u16::MAX), |seen| {
        let start = &seen[..seen.len().min(SIGNATURE.len())];
        if !SIGNATURE.starts_with(start) {
            return Some(Err(format!(
                "the connection starts {}, not the v2 signature",
                show(&seen[..seen.len().min(16)])
            )));
        }
        if seen.len() < 16 {
            return None;
        }
        let total = 16 + usize::from(u16::from_be_bytes([seen[14], seen[15]]));
        (seen.len() >= total).then_some(Ok(total))
    })
    .await;
    take_parsed(stream, len, parse_v2).await
}

/// Checks a v1 line (CRLF included) against section 2.1.
pub fn parse_v1(raw: &[u8]) -> Result<Header, String> {
    let shown = show(raw);
    if raw.len() > V1_MAX || !raw.ends_with(b"\r\n") {
        return Err(format!(
            "a v1 header is one line of at most {V1_MAX} bytes ending in CRLF (2.1); got {shown}"
        ));
    }
    if !raw.starts_with(b"PROXY ") {
        return Err(format!(
            "a v1 header starts with \"PROXY \" (2.1); got {shown}"
        ));
    }
    let line = std::str::from_utf8(&raw[..raw.len() - 2])
        .map_err(|_| format!("a v1 header is US-ASCII text (2.1); got {shown}"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    let header = |source, destination| Header {
        version: Version::V1,
        command: Command::Proxy,
        source,
        destination,
        raw: raw.to_vec(),
    };
    match fields.get(1).copied() {
        // Anything may follow UNKNOWN up to the CRLF, and is ignored (2.1).
        Some("UNKNOWN") => return Ok(header(None, None)),
        Some("TCP4") | Some("TCP6") => {}
        _ => {
            return Err(format!(
                "a v1 header names its protocol after \"PROXY \": TCP4, TCP6 or UNKNOWN (2.1); got \
                 {shown}"
            ))
        }
    }
    let [_, family, source, destination, sport, dport] = fields[..] else {
        return Err(format!(
            "a v1 header is \"PROXY\", the protocol, two addresses and two ports, each after one \
             space (2.1); got {shown}"
        ));
    };
    let address = |text: &str| -> Result<IpAddr, String> {
        let parsed = match family {
            "TCP4" => text.parse::<Ipv4Addr>().map(IpAddr::V4).ok(),
            _ => text.parse::<Ipv6Addr>().map(IpAddr::V6).ok(),
        };
        parsed.ok_or_else(|| {
            format!("\"{text}\" is no {family} address (2.1: the address in its usual form); got {shown}")
        })
    };
    let port =
        |text: &str| -> Result<u16, String> {
            let digits =
                !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
            digits.then(|| text.parse::<u16>().ok()).flatten().ok_or_else(|| {
            format!("\"{text}\" is no port (2.1: a decimal integer from 0 to 65535); got {shown}")
        })
        };
    Ok(header(
        Some(SocketAddr::new(address(source)?, port(sport)?)),
        Some(SocketAddr::new(address(destination)?, port(dport)?)),
    ))
}

/// Checks a v2 header (signature, the 4 fixed bytes and the `len` that follow) against section
/// 2.2: version, command, family and protocol, the addresses' length, the TLVs, and the CRC32c
/// TLV when there is one.
pub fn parse_v2(raw: &[u8]) -> Result<Header, String> {
    if raw.len() < 16 || raw[..12] != SIGNATURE {
        return Err(format!(
            "a v2 header starts with the 12-byte signature (2.2); got {}",
            show(raw)
        ));
    }
    let (version, command) = (raw[12] >> 4, raw[12] & 0x0f);
    if version != 2 {
        return Err(format!(
            "the version nibble of a v2 header is 2 (byte 13's high four bits, 2.2); got {version}"
        ));
    }
    let command = match command {
        0 => Command::Local,
        1 => Command::Proxy,
        other => {
            return Err(format!(
                "a v2 header's command is 0 (LOCAL) or 1 (PROXY) (byte 13's low four bits, 2.2); \
                 got {other}"
            ))
        }
    };
    let (family, protocol) = (raw[13] >> 4, raw[13] & 0x0f);
    let len = usize::from(u16::from_be_bytes([raw[14], raw[15]]));
    if raw.len() != 16 + len {
        return Err(format!(
            "a v2 header's length field counts the bytes after it (2.2): it says {len}, {} came",
            raw.len() - 16
        ));
    }
    let body = &raw[16..];
    let addresses = match family {
        0 => 0,
        1 => 12,
        2 => 36,
        3 => 216,
        other => {
            return Err(format!(
            "a v2 header's address family is 0 to 3 (byte 14's high four bits, 2.2); got {other}"
        ))
        }
    };
    if protocol > 2 {
        return Err(format!(
            "a v2 header's transport protocol is 0 to 2 (byte 14's low four bits, 2.2); got {protocol}"
        ));
    }
    if body.len() < addresses {
        return Err(format!(
            "a v2 header of family {family} carries {addresses} bytes of addresses (2.2); its length \
             leaves {}",
            body.len()
        ));
    }
    check_tlvs(raw, 16 + addresses)?;
    let (source, destination) = match family {
        1 => {
            let ip = |at: usize| IpAddr::from([body[at], body[at + 1], body[at + 2], body[at + 3]]);
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            (
                Some(SocketAddr::new(ip(0), port(8))),
                Some(SocketAddr::new(ip(4), port(10))),
            )
        }
        2 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                IpAddr::from(octets)
            };
            let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
            (
                Some(SocketAddr::new(ip(0), port(32))),
                Some(SocketAddr::new(ip(16), port(34))),
            )
        }
        _ => (None, None),
    };
    if command == Command::Proxy && protocol != 1 && family != 0 {
        return Err(format!(
            "a v2 header for a TCP connection gives the STREAM protocol, 1 (2.2); got {protocol}"
        ));
    }
    Ok(Header {
        version: Version::V2,
        command,
        source,
        destination,
        raw: raw.to_vec(),
    })
}

/// The TLVs after the addresses (section 2.2.7): each a type, a 2-byte length and that many
/// bytes, filling the header exactly; a CRC32c TLV (2.2.5) must match the header.
fn check_tlvs(raw: &[u8], mut at: usize) -> Result<(), String> {
    const PP2_TYPE_CRC32C: u8 = 0x03;
    while at < raw.len() {
        if raw.len() - at < 3 {
            return Err(format!(
                "a v2 header's TLV at byte {at} is cut short: {} byte(s) left of the 3 its type \
                 and length take (2.2.7)",
                raw.len() - at
            ));
        }
        let (kind, len) = (
            raw[at],
            usize::from(u16::from_be_bytes([raw[at + 1], raw[at + 2]])),
        );
        let value = at + 3;
        if raw.len() - value < len {
            return Err(format!(
                "a v2 header's TLV of type {kind:#04x} says {len} bytes, and the header leaves {} \
                 (2.2.7)",
                raw.len() - value
            ));
        }
        if kind == PP2_TYPE_CRC32C {
            if len != 4 {
                return Err(format!(
                    "the CRC32c TLV holds 4 bytes (2.2.5); this one {len}"
                ));
            }
            let mut zeroed = raw.to_vec();
            zeroed[value..value + 4].fill(0);
            let sent =
                u32::from_be_bytes([raw[value], raw[value + 1], raw[value + 2], raw[value + 3]]);
            let computed = crc32c::crc32c(&zeroed);
            if sent != computed {
                return Err(format!(
                    "the CRC32c TLV says {sent:#010x}, the header's checksum is {computed:#010x} \
                     (2.2.5)"
                ));
            }
        }
        at = value + len;
    }
    Ok(())
}

/// The address tprox's clients name as their own in the header they send in an accept run:
/// the real client's port on a loopback address no client of tprox's has, so that where a
/// proxy sends a header of its own, it shows whether it passed on the client the first header
/// named (as it must) or its socket's peer.
pub fn claimed_source(real: SocketAddr) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::new(127, 88, 0, 1).into(), real.port())
}

/// A header of `version` with the PROXY command, as tprox's clients send it: for a client at
/// `source` that connected to `destination`. IPv4 on both sides gives TCP4, anything else TCP6
/// (an IPv4 address then in its mapped form).
pub fn header(version: Version, source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let six = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let four = source.is_ipv4() && destination.is_ipv4();
    match version {
        Version::V1 => {
            let (family, src, dst) = match four {
                true => ("TCP4", source.ip(), destination.ip()),
                false => (
                    "TCP6",
                    six(source.ip()).into(),
                    six(destination.ip()).into(),
                ),
            };
            format!(
                "PROXY {family} {src} {dst} {} {}\r\n",
                source.port(),
                destination.port()
            )
            .into_bytes()
        }
        Version::V2 => {
            let mut body = Vec::new();
            match (four, source.ip(), destination.ip()) {
                (true, IpAddr::V4(s), IpAddr::V4(d)) => {
                    body.extend_from_slice(&s.octets());
                    body.extend_from_slice(&d.octets());
                }
                (_, s, d) => {
                    body.extend_from_slice(&six(s).octets());
                    body.extend_from_slice(&six(d).octets());
                }
            }
            body.extend_from_slice(&source.port().to_be_bytes());
            body.extend_from_slice(&destination.port().to_be_bytes());
            let family = if four { 0x11 } else { 0x21 };
            v2(Command::Proxy, family, &body)
        }
    }
}

/// A v2 header of `command`, family and protocol byte `family` (0x11: TCP over IPv4, 0x21: over
/// IPv6, 0x00: unspecified) and `body` (addresses, ports, TLVs) (section 2.2).
pub fn v2(command: Command, family: u8, body: &[u8]) -> Vec<u8> {
    let mut raw = SIGNATURE.to_vec();
    raw.push(match command {
        Command::Local => 0x20,
        Command::Proxy => 0x21,
    });
    raw.push(family);
    raw.extend_from_slice(&(body.len() as u16).to_be_bytes());
    raw.extend_from_slice(body);
    raw
}

/// Bytes as a diagnostic shows them: text as text, the rest escaped, long runs cut.
fn show(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(120)];
    let text: String = cut.escape_ascii().to_string();
    match bytes.len() > cut.len() {
        true => format!("\"{text}\"… ({} bytes)", bytes.len()),
        false => format!("\"{text}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 header with any command nibble, for malformed ones.
    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut raw = super::v2(Command::Local, family, body);
        raw[12] = 0x20 | command;
        raw
    }

    fn tcp4_body() -> Vec<u8> {
        let mut body = vec![127, 0, 0, 1, 127, 0, 0, 2];
        body.extend_from_slice(&40000u16.to_be_bytes());
        body.extend_from_slice(&8080u16.to_be_bytes());
        body
    }

    #[test]
    fn well_formed_v1_headers_parse_and_every_kind_of_malformed_one_is_named() {
        let header = parse_v1(b"PROXY TCP4 127.0.0.1 127.0.0.2 40000 8080\r\n").unwrap();
        assert_eq!(header.source, Some("127.0.0.1:40000".parse().unwrap()));
        assert_eq!(header.destination, Some("127.0.0.2:8080".parse().unwrap()));
        let six = parse_v1(b"PROXY TCP6 ::1 ::1 1 65535\r\n").unwrap();
        assert_eq!(six.destination, Some("[::1]:65535".parse().unwrap()));
        assert_eq!(
            parse_v1(b"PROXY UNKNOWN whatever\r\n").unwrap().source,
            None
        );
        for (bad, named) in [
            (&b"PROXY TCP4 127.0.0.1 127.0.0.2 40000 8080\n"[..], "CRLF"),
            (
                b"PROXY TCP5 127.0.0.1 127.0.0.2 40000 8080\r\n",
                "TCP4, TCP6 or UNKNOWN",
            ),
            (
                b"PROXY TCP4 127.0.0.1 127.0.0.2 40000 80800\r\n",
                "is no port",
            ),
            (
                b"PROXY TCP4 127.0.0.1 127.0.0.2 +4000 8080\r\n",
                "is no port",
            ),
            (
                b"PROXY TCP4 127.0.0.1 ::1 40000 8080\r\n",
                "is no TCP4 address",
            ),
            (
                b"PROXY TCP4 127.0.0.1  127.0.0.2 40000 8080\r\n",
                "each after one space",
            ),
        ] {
            let why = parse_v1(bad).unwrap_err();
            assert!(
                why.contains(named),
                "{}: {why}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(100));
        assert!(parse_v1(long.as_bytes())
            .unwrap_err()
            .contains("at most 107"));
    }

    #[test]
    fn well_formed_v2_headers_parse_and_every_kind_of_malformed_one_is_named() {
        let header = parse_v2(&v2(1, 0x11, &tcp4_body())).unwrap();
        assert_eq!(header.command, Command::Proxy);
        assert_eq!(header.source, Some("127.0.0.1:40000".parse().unwrap()));
        assert_eq!(header.destination, Some("127.0.0.2:8080".parse().unwrap()));
        assert_eq!(parse_v2(&v2(0, 0x00, &[])).unwrap().command, Command::Local);
        // A TLV, and a CRC32c TLV that matches.
        let mut body = tcp4_body();
        body.extend_from_slice(&[0x04, 0x00, 0x02, 0xab, 0xcd]);
        body.extend_from_slice(&[0x03, 0x00, 0x04, 0, 0, 0, 0]);
        let mut raw = v2(1, 0x11, &body);
        let crc = crc32c::crc32c(&raw);
        let at = raw.len() - 4;
        raw[at..].copy_from_slice(&crc.to_be_bytes());
        parse_v2(&raw).unwrap();
        raw[at] ^= 1;
        assert!(parse_v2(&raw).unwrap_err().contains("CRC32c"));

        let mut wrong_length = v2(1, 0x11, &tcp4_body());
        wrong_length[15] += 1;
        assert!(parse_v2(&wrong_length)
            .unwrap_err()
            .contains("length field"));
        assert!(parse_v2(&v2(1, 0x11, &tcp4_body()[..8]))
            .unwrap_err()
            .contains("12 bytes"));
        assert!(parse_v2(&v2(2, 0x11, &tcp4_body()))
            .unwrap_err()
            .contains("command"));
        let mut cut_tlv = tcp4_body();
        cut_tlv.extend_from_slice(&[0x04, 0x00, 0x09, 1]);
        assert!(parse_v2(&v2(1, 0x11, &cut_tlv))
            .unwrap_err()
            .contains("says 9 bytes"));
        assert!(parse_v2(&v2(1, 0x12, &tcp4_body()))
            .unwrap_err()
            .contains("STREAM"));
        let mut version_one = v2(1, 0x11, &tcp4_body());
        version_one[12] = 0x11;
        assert!(parse_v2(&version_one)
            .unwrap_err()
            .contains("version nibble"));
    }

    #[test]
    fn the_headers_tprox_clients_send_parse_back_to_the_claimed_client() {
        let real: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let listener: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let claimed = claimed_source(real);
        assert_eq!(claimed, "127.88.0.1:40000".parse().unwrap());
        let v1 = parse_v1(&header(Version::V1, claimed, listener)).unwrap();
        let v2 = parse_v2(&header(Version::V2, claimed, listener)).unwrap();
        for parsed in [v1, v2] {
            assert_eq!(
                (parsed.source, parsed.destination),
                (Some(claimed), Some(listener))
            );
            assert_eq!(parsed.command, Command::Proxy);
        }
        let six: SocketAddr = "[::1]:5".parse().unwrap();
        let mixed = parse_v1(&header(Version::V1, claimed, six)).unwrap();
        assert_eq!(mixed.destination, Some(six));
        assert_eq!(
            parse_v2(&header(Version::V2, six, six)).unwrap().source,
            Some(six)
        );
    }

    #[test]
    fn modes_parse_either_way_or_both_and_say_what_is_wrong() {
        let mode: Mode = "accept:v2,send:v1".parse().unwrap();
        assert_eq!(
            (mode.accept, mode.send),
            (Some(Version::V2), Some(Version::V1))
        );
        assert_eq!(mode.to_string(), "accept:v2,send:v1");
        assert_eq!("send:v2".parse::<Mode>().unwrap().to_string(), "send:v2");
        assert_eq!(
            mode.reference_args(),
            ["--accept-proxy", "--send-proxy", "v1"]
        );
        for (bad, says) in [
            ("send:v3", "'v3' is no version"),
            ("receive:v1", "neither send nor accept"),
            ("send:v1,send:v2", "send is given twice"),
            ("v1", "has no ':'"),
        ] {
            let why = bad.parse::<Mode>().unwrap_err();
            assert!(
                why.contains(says) && why.contains("accept:v1"),
                "{bad}: {why}"
            );
        }
    }

    /// From a socket: a header split into one-byte writes is read whole, the stream goes on
    /// after it, and a connection that starts with data keeps its data.
    #[tokio::test]
    async fn a_header_is_read_off_a_stream_however_it_is_split_and_only_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let send = |bytes: Vec<u8>| async move {
            use tokio::io::AsyncWriteExt;
            let mut client = TcpStream::connect(addr).await.unwrap();
            for byte in bytes {
                client.write_all(&[byte]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            client
        };
        let mut line = b"PROXY TCP4 127.0.0.1 127.0.0.2 40000 8080\r\n".to_vec();
        line.extend_from_slice(b"data");
        let client = tokio::spawn(send(line));
        let (mut stream, _) = listener.accept().await.unwrap();
        let found = read(&mut stream, Duration::from_secs(5)).await;
        assert!(matches!(found, Found::Header(_)), "{found:?}");
        let mut rest = [0u8; 4];
        stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"data");
        drop(client.await);

        let client = tokio::spawn(send(b"hello".to_vec()));
        let (mut stream, _) = listener.accept().await.unwrap();
        let found = read(&mut stream, Duration::from_secs(5)).await;
        let missing = matches!(&found, Found::Missing(why) if why.contains("neither"));
        assert!(missing, "{found:?}");
        let mut rest = [0u8; 5];
        stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"hello");
        drop(client.await);
    }
}
