//! Fronts: listeners whose clients name their destination in a handshake, SOCKS5 (RFC 1928,
//! with RFC 1929 username/password) or HTTP CONNECT (RFC 9110 §9.3.6), instead of every client
//! going to one fixed destination.
//!
//! A pair on a front goes through three steps, each in its own function so that the server
//! drives them in order and answers every failure the way the client's protocol expects:
//!
//! 1. [`handshake`] reads the client's greeting, credentials and request, byte by byte as they
//!    come (a request split over many writes is normal), and keeps whatever the client sent
//!    behind the request as early data: it belongs to the destination, not to the handshake.
//! 2. [`Front::resolve`] turns the requested name into addresses the allow-list permits.
//! 3. [`answer`] tells the client how the dial went: success, or the reply code for refused,
//!    unreachable, not found or not allowed; on failure the server closes the client.
//!
//! Only [`Allow`]ed destinations are dialed, loopback only unless configured otherwise: a front
//! that dials whatever anyone asks is an open relay, which strangers use to hide their traffic
//! behind this machine's address.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Which handshake a front speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SOCKS version 5, CONNECT only.
    Socks5,
    /// An HTTP proxy that serves CONNECT only.
    HttpConnect,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Socks5 => "SOCKS5",
            Kind::HttpConnect => "HTTP CONNECT",
        })
    }
}

/// A front's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Front {
    /// The handshake.
    pub kind: Kind,
    /// The username and password a client must give, if any. Read from a file, so that the
    /// password shows neither in `ps` nor in any log line.
    pub credentials: Option<Credentials>,
    /// Where clients may go.
    pub allow: Allow,
}

impl fmt::Debug for Front {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(credentials) = &self.credentials {
            write!(f, " (user {}, password ***)", credentials.user)?;
        }
        write!(f, ", allowed: {}", self.allow)
    }
}

/// A username and password (RFC 1929, or HTTP Basic).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The username, 1 to 255 bytes.
    pub user: String,
    password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:***", self.user)
    }
}

impl Credentials {
    /// Reads `USER:PASS` from the first line of `path`.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read credentials file {}: {e}", path.display()))?;
        let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
        let Some((user, password)) = line.split_once(':') else {
            return Err(format!(
                "credentials file {}: the first line must be USER:PASSWORD",
                path.display()
            ));
        };
        if user.is_empty() || user.len() > 255 || password.is_empty() || password.len() > 255 {
            return Err(format!(
                "credentials file {}: user and password must each be 1 to 255 bytes (RFC 1929)",
                path.display()
            ));
        }
        Ok(Credentials {
            user: user.into(),
            password: password.into(),
        })
    }

    /// Whether `user` and `password` are these, compared in time that does not depend on
    /// where they differ.
    fn matches(&self, user: &[u8], password: &[u8]) -> bool {
        let same = |a: &[u8], b: &[u8]| {
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
        };
        // Both compared, always: the time says nothing about which one was wrong.
        same(user, self.user.as_bytes()) & same(password, self.password.as_bytes())
    }
}

/// The destinations clients may ask for: networks, each with a range of ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow(Vec<(ipnet::IpNet, u16, u16)>);

impl Default for Allow {
    /// Loopback only (127.0.0.0/8 and ::1), any port.
    fn default() -> Self {
        Allow(vec![
            ("127.0.0.0/8".parse().expect("a valid network"), 1, u16::MAX),
            ("::1/128".parse().expect("a valid network"), 1, u16::MAX),
        ])
    }
}

impl Allow {
    /// An allow-list of `NET[/BITS][:PORT[-PORT]]` entries (IPv6 in brackets: `[fd00::]/8:443`).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|entry| parse_allow(entry.as_ref()))
            .collect::<Result<_, _>>()
            .map(Allow)
    }

    /// Whether a client may go to `addr`.
    pub fn permits(&self, addr: SocketAddr) -> bool {
        // An IPv4 address written as IPv6 (::ffff:a.b.c.d) is the IPv4 address.
        let ip = match addr.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.0
            .iter()
            .any(|(net, low, high)| net.contains(&ip) && (*low..=*high).contains(&addr.port()))
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (net, low, high)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match (*low, *high) {
                (1, u16::MAX) => write!(f, "{net}")?,
                (low, high) if low == high => write!(f, "{net} port {low}")?,
                (low, high) => write!(f, "{net} ports {low}-{high}")?,
            }
        }
        Ok(())
    }
}

fn parse_allow(entry: &str) -> Result<(ipnet::IpNet, u16, u16), String> {
    let bad = |why: &str| {
        format!("allow '{entry}': {why} (write NET[/BITS][:PORT[-PORT]], e.g. 10.0.0.0/8:443 or [fd00::]/8)")
    };
    // The network, then an optional port range after the last colon outside brackets.
    let (net, ports) = match entry.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']').ok_or_else(|| bad("an unclosed '['"))?;
            let (bits, ports) = match after.split_once(':') {
                Some((bits, ports)) => (bits, Some(ports)),
                None => (after, None),
            };
            (format!("{inside}{bits}"), ports)
        }
        None => match entry.split_once(':') {
            Some((net, ports)) => (net.to_string(), Some(ports)),
            None => (entry.to_string(), None),
        },
    };
    let net: ipnet::IpNet = match net.parse() {
        Ok(net) => net,
        Err(_) => IpAddr::from_str(&net)
            .map(ipnet::IpNet::from)
            .map_err(|_| bad("not a network or an address"))?,
    };
    let port = |text: &str| {
        text.parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| bad("a port must be 1-65535"))
    };
    let (low, high) = match ports {
        None => (1, u16::MAX),
        Some(range) => match range.split_once('-') {
            Some((low, high)) => (port(low)?, port(high)?),
            None => (port(range)?, port(range)?),
        },
    };
    if low > high {
        return Err(bad("the port range is backwards"));
    }
    Ok((net, low, high))
}

/// What a client asked for, and what it sent behind its request.
#[derive(Debug)]
pub struct Request {
    /// The destination's name or address, as the client wrote it.
    pub host: String,
    /// The destination's port.
    pub port: u16,
    /// Bytes that came after the request, before any reply: the first of the client's data.
    pub early: Vec<u8>,
}

/// Why a pair on a front ended before its relay began.
#[derive(Debug)]
pub enum Refusal {
    /// The client broke off, or sent what is not the protocol: closed without a reply (or with
    /// the protocol's error reply, already sent).
    Client(String),
    /// The client was answered with an error and closed.
    Answered(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Client(why) | Refusal::Answered(why) => f.write_str(why),
        }
    }
}

/// Why a requested destination is not dialed, or its dial failed: what the reply code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The allow-list does not permit it.
    NotAllowed,
    /// The name has no address.
    NameNotFound,
    /// The destination refused the connection.
    Refused,
    /// No route to the network or host.
    Unreachable,
    /// No answer within the stall timeout.
    TimedOut,
    /// Anything else (for example, out of descriptors).
    General,
}

impl Failure {
    /// The failure a dial error means.
    pub fn of(e: &io::Error) -> Failure {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => Failure::Refused,
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                Failure::Unreachable
            }
            io::ErrorKind::TimedOut => Failure::TimedOut,
            _ => Failure::General,
        }
    }

    /// The SOCKS5 reply code (RFC 1928 §6).
    fn socks5(self) -> u8 {
        match self {
            Failure::General => 0x01,
            Failure::NotAllowed => 0x02,
            Failure::Unreachable | Failure::NameNotFound | Failure::TimedOut => 0x04,
            Failure::Refused => 0x05,
        }
    }

    /// The HTTP status line.
    fn http(self) -> &'static str {
        match self {
            Failure::NotAllowed => "403 Forbidden",
            Failure::TimedOut => "504 Gateway Timeout",
            Failure::General => "503 Service Unavailable",
            Failure::NameNotFound | Failure::Refused | Failure::Unreachable => "502 Bad Gateway",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Failure::NotAllowed => "destination not allowed",
            Failure::NameNotFound => "name not found",
            Failure::Refused => "connection refused",
            Failure::Unreachable => "unreachable",
            Failure::TimedOut => "no answer within the stall timeout",
            Failure::General => "dial failed",
        })
    }
}

impl Front {
    /// The addresses `request` may be dialed at: the name's, filtered by the allow-list.
    pub async fn resolve(&self, request: &Request) -> Result<Vec<SocketAddr>, Failure> {
        let found: Vec<SocketAddr> = match request.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, request.port)],
            Err(_) => tokio::net::lookup_host((request.host.as_str(), request.port))
                .await
                .map_err(|_| Failure::NameNotFound)?
                .collect(),
        };
        if found.is_empty() {
            return Err(Failure::NameNotFound);
        }
        let allowed: Vec<SocketAddr> = found
            .into_iter()
            .filter(|addr| self.allow.permits(*addr))
            .collect();
        if allowed.is_empty() {
            return Err(Failure::NotAllowed);
        }
        Ok(allowed)
    }
}

/// Longest HTTP CONNECT request head read; a longer one is answered 431.
pub const MAX_HTTP_HEAD: usize = 8 * 1024;

/// Reads the client's handshake within `deadline` of now: a client that has not finished it by
/// then is closed (the stall timeout, so a client that connects and says nothing costs a
/// descriptor for no longer than a stalled pair does). Failures are answered as the protocol
/// says before they are returned.
pub async fn handshake(
    client: &TcpStream,
    front: &Front,
    deadline: Duration,
) -> Result<Request, Refusal> {
    let mut reader = Reader {
        stream: client,
        buf: Vec::new(),
        pos: 0,
        deadline: Instant::now() + deadline,
    };
    match front.kind {
        Kind::Socks5 => socks5(&mut reader, front).await,
        Kind::HttpConnect => http_connect(&mut reader, front).await,
    }
}

/// Tells the client how its request went: `Ok(bound)` with the address the proxy dialed from,
/// or the failure's reply. The server closes the client after a failure.
pub async fn answer(
    client: &TcpStream,
    kind: Kind,
    outcome: Result<SocketAddr, Failure>,
) -> io::Result<()> {
    let reply = match (kind, outcome) {
        (Kind::Socks5, Ok(bound)) => socks5_reply(0, bound),
        (Kind::Socks5, Err(failure)) => socks5_reply(failure.socks5(), UNSPECIFIED),
        (Kind::HttpConnect, Ok(_)) => b"HTTP/1.1 200 Connection established\r\n\r\n".to_vec(),
        (Kind::HttpConnect, Err(failure)) => http_error(failure.http(), ""),
    };
    crate::write_early(client, &reply).await
}

const UNSPECIFIED: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Reads the handshake as it arrives, whatever the writes it was split into.
struct Reader<'a> {
    stream: &'a TcpStream,
    /// Everything read so far.
    buf: Vec<u8>,
    /// How much of `buf` the handshake has taken.
    pos: usize,
    /// When the client must have finished.
    deadline: Instant,
}

impl Reader<'_> {
    /// Reads until `n` bytes past the taken ones are at hand.
    async fn need(&mut self, n: usize) -> Result<(), Refusal> {
        while self.buf.len() - self.pos < n {
            self.fill().await?;
        }
        Ok(())
    }

    /// Reads once more, whatever comes.
    async fn fill(&mut self) -> Result<(), Refusal> {
        let mut chunk = [0u8; 1024];
        loop {
            match tokio::time::timeout_at(self.deadline, self.stream.readable()).await {
                Err(_) => {
                    return Err(Refusal::Client(
                        "handshake not finished within the stall timeout".into(),
                    ))
                }
                Ok(Err(e)) => return Err(Refusal::Client(format!("client failed: {e}"))),
                Ok(Ok(())) => {}
            }
            match self.stream.try_read(&mut chunk) {
                Ok(0) => return Err(Refusal::Client("client closed during the handshake".into())),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(Refusal::Client(format!("client failed: {e}"))),
            }
        }
    }

    /// Takes the next `n` bytes (after [`Reader::need`]).
    async fn take(&mut self, n: usize) -> Result<&[u8], Refusal> {
        self.need(n).await?;
        self.pos += n;
        Ok(&self.buf[self.pos - n..self.pos])
    }

    async fn byte(&mut self) -> Result<u8, Refusal> {
        Ok(self.take(1).await?[0])
    }

    /// What came after the handshake: the client's first data.
    fn rest(&mut self) -> Vec<u8> {
        self.buf.split_off(self.pos)
    }
}

/// Sends a final reply and says what it answered.
async fn refuse(client: &TcpStream, reply: &[u8], why: impl Into<String>) -> Refusal {
    let _ = crate::write_early(client, reply).await;
    Refusal::Answered(why.into())
}

async fn socks5(reader: &mut Reader<'_>, front: &Front) -> Result<Request, Refusal> {
    let client = reader.stream;
    // Greeting: VER NMETHODS METHODS...
    if reader.byte().await? != 5 {
        return Err(Refusal::Client("not a SOCKS5 greeting".into()));
    }
    let count = usize::from(reader.byte().await?);
    let methods = reader.take(count).await?.to_vec();
    let wanted = if front.credentials.is_some() { 2 } else { 0 };
    if !methods.contains(&wanted) {
        let why = if wanted == 2 {
            "client offers no username/password authentication"
        } else {
            "client offers no method without authentication"
        };
        return Err(refuse(client, &[5, 0xff], why).await);
    }
    crate::write_early(client, &[5, wanted])
        .await
        .map_err(|e| Refusal::Client(format!("client failed: {e}")))?;
    if let Some(credentials) = &front.credentials {
        // RFC 1929: VER ULEN UNAME PLEN PASSWD.
        if reader.byte().await? != 1 {
            return Err(refuse(client, &[1, 1], "bad username/password version").await);
        }
        let len = usize::from(reader.byte().await?);
        let user = reader.take(len).await?.to_vec();
        let len = usize::from(reader.byte().await?);
        let password = reader.take(len).await?.to_vec();
        if !credentials.matches(&user, &password) {
            // The name as given may be logged; the password never is.
            let why = format!(
                "wrong username or password (user '{}')",
                String::from_utf8_lossy(&user)
            );
            return Err(refuse(client, &[1, 1], why).await);
        }
        crate::write_early(client, &[1, 0])
            .await
            .map_err(|e| Refusal::Client(format!("client failed: {e}")))?;
    }
    // Request: VER CMD RSV ATYP DST.ADDR DST.PORT.
    let head = reader.take(4).await?.to_vec();
    if head[0] != 5 {
        return Err(refuse(
            client,
            &socks5_reply(0x01, UNSPECIFIED),
            "not a SOCKS5 request",
        )
        .await);
    }
    let host = match head[3] {
        1 => IpAddr::from(<[u8; 4]>::try_from(reader.take(4).await?).expect("4 bytes")).to_string(),
        4 => IpAddr::from(<[u8; 16]>::try_from(reader.take(16).await?).expect("16 bytes"))
            .to_string(),
        3 => {
            let len = usize::from(reader.byte().await?);
            let name = reader.take(len).await?;
            match std::str::from_utf8(name) {
                Ok(name) if !name.is_empty() => name.to_string(),
                _ => {
                    return Err(refuse(
                        client,
                        &socks5_reply(0x04, UNSPECIFIED),
                        "a domain name that is not text",
                    )
                    .await)
                }
            }
        }
        other => {
            return Err(refuse(
                client,
                &socks5_reply(0x08, UNSPECIFIED),
                format!("address type {other} not supported"),
            )
            .await)
        }
    };
    let port = u16::from_be_bytes(<[u8; 2]>::try_from(reader.take(2).await?).expect("2 bytes"));
    if head[1] != 1 {
        let command = match head[1] {
            2 => "BIND".to_string(),
            3 => "UDP ASSOCIATE".to_string(),
            other => format!("command {other}"),
        };
        return Err(refuse(
            client,
            &socks5_reply(0x07, UNSPECIFIED),
            format!("{command} not supported (CONNECT only)"),
        )
        .await);
    }
    Ok(Request {
        host,
        port,
        early: reader.rest(),
    })
}

/// VER REP RSV ATYP BND.ADDR BND.PORT.
fn socks5_reply(code: u8, bound: SocketAddr) -> Vec<u8> {
    let mut reply = vec![5, code, 0];
    match bound.ip() {
        IpAddr::V4(v4) => {
            reply.push(1);
            reply.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            reply.push(4);
            reply.extend_from_slice(&v6.octets());
        }
    }
    reply.extend_from_slice(&bound.port().to_be_bytes());
    reply
}

fn http_error(status: &str, extra_headers: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status}\r\n{extra_headers}Content-Length: 0\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

async fn http_connect(reader: &mut Reader<'_>, front: &Front) -> Result<Request, Refusal> {
    let client = reader.stream;
    // The head ends at the first empty line; it may come in any number of writes.
    let end = loop {
        if let Some(at) = find(&reader.buf, b"\r\n\r\n") {
            break at + 4;
        }
        if reader.buf.len() > MAX_HTTP_HEAD {
            return Err(refuse(
                client,
                &http_error("431 Request Header Fields Too Large", ""),
                format!("request head longer than {MAX_HTTP_HEAD} bytes"),
            )
            .await);
        }
        reader.fill().await?;
    };
    if end > MAX_HTTP_HEAD {
        return Err(refuse(
            client,
            &http_error("431 Request Header Fields Too Large", ""),
            format!("request head longer than {MAX_HTTP_HEAD} bytes"),
        )
        .await);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let parsed = request.parse(&reader.buf[..end]);
    let bad =
        |why: String| async move { refuse(client, &http_error("400 Bad Request", ""), why).await };
    match parsed {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(bad("an incomplete request head".into()).await),
        Err(e) => return Err(bad(format!("a malformed request: {e}")).await),
    }
    if request.method != Some("CONNECT") {
        let why = format!(
            "method {} not supported (CONNECT only)",
            request.method.unwrap_or("?")
        );
        return Err(refuse(
            client,
            &http_error("405 Method Not Allowed", "Allow: CONNECT\r\n"),
            why,
        )
        .await);
    }
    let target = request.path.unwrap_or("");
    let Some((host, port)) = target
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok().filter(|&p| p > 0)?)))
    else {
        return Err(bad(format!("'{target}' is not HOST:PORT")).await);
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(bad(format!("'{target}' has no host")).await);
    }
    if let Some(credentials) = &front.credentials {
        let given = request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("proxy-authorization"))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .and_then(basic_token)
            .and_then(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
            });
        let accepted = given.as_deref().is_some_and(|decoded| {
            decoded
                .iter()
                .position(|&b| b == b':')
                .is_some_and(|at| credentials.matches(&decoded[..at], &decoded[at + 1..]))
        });
        if !accepted {
            let why = if given.is_some() {
                "wrong username or password"
            } else {
                "no credentials given"
            };
            return Err(refuse(
                client,
                &http_error(
                    "407 Proxy Authentication Required",
                    "Proxy-Authenticate: Basic realm=\"tprox-relay\"\r\n",
                ),
                why,
            )
            .await);
        }
    }
    let host = host.to_string();
    reader.pos = end;
    Ok(Request {
        host,
        port,
        early: reader.rest(),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The token of a `Basic` authorization header value. The scheme's name is matched without
/// regard to case (RFC 9110 §11.1: `basic` and `BASIC` are `Basic`), and any whitespace may
/// separate it from the token.
fn basic_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("basic")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_basic_scheme_is_matched_without_regard_to_case() {
        assert_eq!(basic_token("Basic YWxpY2U6cHc="), Some("YWxpY2U6cHc="));
        assert_eq!(basic_token("basic  YWxpY2U6cHc= "), Some("YWxpY2U6cHc="));
        assert_eq!(basic_token("BASIC\tYWxpY2U6cHc="), Some("YWxpY2U6cHc="));
        assert_eq!(basic_token("Bearer YWxpY2U6cHc="), None);
        assert_eq!(basic_token("Basic"), None);
        assert_eq!(basic_token("Basic   "), None);
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    // Only asked of the allow-list: nothing here dials, so the addresses outside loopback are
    // never sent to.
    #[test]
    fn by_default_only_loopback_is_allowed() {
        let allow = Allow::default();
        for permitted in [
            "127.0.0.1:80",
            "127.9.9.9:1",
            "[::1]:443",
            "[::ffff:127.0.0.1]:22",
        ] {
            assert!(allow.permits(addr(permitted)), "{permitted}");
        }
        for refused in [
            "10.0.0.1:80",
            "192.168.1.1:443",
            "8.8.8.8:53",
            "[fd00::1]:80",
            "[::ffff:10.0.0.1]:80",
            "0.0.0.0:80",
        ] {
            assert!(!allow.permits(addr(refused)), "{refused}");
        }
        assert_eq!(allow.to_string(), "127.0.0.0/8, ::1/128");
    }

    #[test]
    fn allow_entries_name_networks_and_ports() {
        let allow =
            Allow::parse(&["10.1.0.0/16:443", "[fd00::]/8:1000-2000", "192.0.2.7"]).unwrap();
        assert!(allow.permits(addr("10.1.2.3:443")));
        assert!(!allow.permits(addr("10.1.2.3:444")));
        assert!(!allow.permits(addr("10.2.0.1:443")));
        assert!(allow.permits(addr("[fd12::1]:1500")));
        assert!(!allow.permits(addr("[fd12::1]:2001")));
        assert!(allow.permits(addr("192.0.2.7:1")));
        assert!(!allow.permits(addr("192.0.2.8:1")));
        assert!(
            !allow.permits(addr("127.0.0.1:443")),
            "a list replaces the default"
        );
        assert_eq!(
            allow.to_string(),
            "10.1.0.0/16 port 443, fd00::/8 ports 1000-2000, 192.0.2.7/32"
        );
        for (bad, says) in [
            ("10.0.0.0/8:0", "a port must be 1-65535"),
            ("10.0.0.0/8:20-10", "backwards"),
            ("[fd00::/8", "unclosed '['"),
            ("intranet", "not a network or an address"),
        ] {
            let error = Allow::parse(&[bad]).unwrap_err();
            assert!(
                error.contains(says) && error.contains("NET[/BITS][:PORT[-PORT]]"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn a_request_outside_the_allow_list_is_not_allowed_before_any_dial() {
        let front = Front {
            kind: Kind::Socks5,
            credentials: None,
            allow: Allow::parse(&["127.0.0.1:7000"]).unwrap(),
        };
        let request = |host: &str, port| Request {
            host: host.into(),
            port,
            early: Vec::new(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            assert_eq!(
                front.resolve(&request("127.0.0.1", 7000)).await,
                Ok(vec![addr("127.0.0.1:7000")])
            );
            assert_eq!(
                front.resolve(&request("127.0.0.1", 7001)).await,
                Err(Failure::NotAllowed)
            );
            assert_eq!(
                front.resolve(&request("10.0.0.1", 7000)).await,
                Err(Failure::NotAllowed)
            );
        });
        assert_eq!(Failure::NotAllowed.socks5(), 0x02);
        assert_eq!(Failure::NotAllowed.http(), "403 Forbidden");
        assert_eq!(Failure::Refused.socks5(), 0x05);
        assert_eq!(Failure::Refused.http(), "502 Bad Gateway");
        assert_eq!(Failure::TimedOut.http(), "504 Gateway Timeout");
        // Unreachable and unknown destinations cannot be provoked on loopback: their replies
        // are checked here, from the dial's error on.
        let unreachable = io::Error::from(io::ErrorKind::HostUnreachable);
        assert_eq!(Failure::of(&unreachable), Failure::Unreachable);
        assert_eq!(Failure::Unreachable.socks5(), 0x04);
        assert_eq!(Failure::NameNotFound.socks5(), 0x04);
        assert_eq!(Failure::Unreachable.http(), "502 Bad Gateway");
    }

    #[test]
    fn credentials_come_from_the_first_line_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        std::fs::write(&file, "alice:open:sesame\r\nignored\n").unwrap();
        let credentials = Credentials::from_file(&file).unwrap();
        assert_eq!(credentials.user, "alice");
        assert!(credentials.matches(b"alice", b"open:sesame"));
        assert!(!credentials.matches(b"alice", b"open:sesamE"));
        assert!(!credentials.matches(b"alic", b"open:sesame"));
        assert_eq!(format!("{credentials:?}"), "alice:***");

        std::fs::write(&file, "no colon here\n").unwrap();
        assert!(Credentials::from_file(&file)
            .unwrap_err()
            .contains("USER:PASSWORD"));
        std::fs::write(&file, format!("bob:{}\n", "x".repeat(256))).unwrap();
        assert!(Credentials::from_file(&file)
            .unwrap_err()
            .contains("1 to 255 bytes"));
        assert!(Credentials::from_file(&dir.path().join("missing"))
            .unwrap_err()
            .contains("cannot read credentials file"));
    }
}
