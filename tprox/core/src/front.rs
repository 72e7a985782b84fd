//! Fronts: proxies whose clients name the destination in a handshake, SOCKS5 (RFC 1928, with
//! RFC 1929 username/password) or HTTP CONNECT (RFC 9110 §9.3.6).
//!
//! Against a front, every connection a case opens first does the handshake naming the case's
//! destination; once the front answers with success the case runs unchanged, since after the
//! handshake a front carries a TCP stream exactly like a forwarder. The handshake happens
//! inside [`crate::harness::Ctx::connect`], before any case starts a clock, so its time never
//! counts against a case's windows.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The handshake a proxy under test expects, with the credentials tprox's clients give.
#[derive(Clone, PartialEq, Eq)]
pub enum Front {
    /// SOCKS version 5, CONNECT.
    Socks5 {
        /// Username and password (RFC 1929), if the proxy requires them.
        credentials: Option<(String, String)>,
    },
    /// HTTP `CONNECT host:port`.
    Connect {
        /// Username and password for Basic `Proxy-Authorization`, if the proxy requires them.
        credentials: Option<(String, String)>,
    },
}

impl FromStr for Front {
    type Err = String;

    /// `socks5`, `socks5:USER:PASS`, `connect` or `connect:USER:PASS`.
    fn from_str(text: &str) -> Result<Self, String> {
        let (kind, credentials) = match text.split_once(':') {
            None => (text, None),
            Some((kind, rest)) => match rest.split_once(':') {
                Some((user, pass)) if !user.is_empty() && !pass.is_empty() => {
                    (kind, Some((user.to_string(), pass.to_string())))
                }
                _ => {
                    return Err(format!(
                        "front '{text}': credentials are written KIND:USER:PASS, e.g. socks5:alice:secret"
                    ))
                }
            },
        };
        if let Some((user, pass)) = &credentials {
            if user.len() > 255 || pass.len() > 255 {
                return Err(format!(
                    "front '{kind}': user and password must be at most 255 bytes each (RFC 1929)"
                ));
            }
        }
        match kind {
            "socks5" => Ok(Front::Socks5 { credentials }),
            "connect" => Ok(Front::Connect { credentials }),
            other => Err(format!(
                "unknown front '{other}': expected socks5, socks5:USER:PASS, connect or connect:USER:PASS"
            )),
        }
    }
}

impl Front {
    /// `socks5` or `connect`: the handshake, without credentials.
    pub fn kind(&self) -> &'static str {
        match self {
            Front::Socks5 { .. } => "socks5",
            Front::Connect { .. } => "connect",
        }
    }

    /// The `--front` value that gives this front, the password included: for a command line
    /// that must work as printed. Reports show [`Display`](fmt::Display)'s masked form.
    pub fn spelled(&self) -> String {
        match self.credentials() {
            Some((user, pass)) => format!("{}:{user}:{pass}", self.kind()),
            None => self.kind().to_string(),
        }
    }
}

impl fmt::Display for Front {
    /// The kind and the user, never the password: this is shown in reports.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, credentials) = match self {
            Front::Socks5 { credentials } => ("socks5", credentials),
            Front::Connect { credentials } => ("connect", credentials),
        };
        f.write_str(kind)?;
        if let Some((user, _)) = credentials {
            write!(f, ":{user}:***")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Front {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// How a handshake that did not open the tunnel ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The front answered as its protocol says it must when it will not connect: a SOCKS5
    /// reply code other than success, a failed authentication, an HTTP status other than 2xx.
    Answered {
        /// What answered: the SOCKS5 reply code, the authentication status (SOCKS5 status
        /// codes are offset by 0x100: a failed RFC 1929 status `s` is `0x100 + s`, and no
        /// acceptable method is 0x1ff), or the HTTP status.
        code: u16,
        /// The answer, for people.
        text: String,
        /// The HTTP response head, when the front is an HTTP proxy.
        head: String,
    },
    /// The front closed, reset, or sent what is not its protocol.
    Broken(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Answered { text, .. } | Refused::Broken(text) => f.write_str(text),
        }
    }
}

impl Front {
    /// The credentials tprox gives, if any.
    pub fn credentials(&self) -> Option<&(String, String)> {
        match self {
            Front::Socks5 { credentials } | Front::Connect { credentials } => credentials.as_ref(),
        }
    }

    /// Asks the front on `stream` for a tunnel to `dest` and reads its answer, leaving the
    /// stream right behind the answer: the next byte read is the destination's.
    pub async fn handshake(&self, stream: &mut TcpStream, dest: SocketAddr) -> Result<(), Refused> {
        self.handshake_with(stream, dest, &Style::default()).await
    }

    /// [`Front::handshake`], written the way `style` says.
    pub async fn handshake_with(
        &self,
        stream: &mut TcpStream,
        dest: SocketAddr,
        style: &Style,
    ) -> Result<(), Refused> {
        self.handshake_reporting(stream, dest, style)
            .await
            .map(|_| ())
    }

    /// [`Front::handshake_with`], and the address a SOCKS5 front's success reply reports as
    /// bound (BND.ADDR and BND.PORT; `None` for a name, or for HTTP, which reports none).
    pub async fn handshake_reporting(
        &self,
        stream: &mut TcpStream,
        dest: SocketAddr,
        style: &Style,
    ) -> Result<Option<SocketAddr>, Refused> {
        let credentials = style
            .credentials
            .as_ref()
            .or(self.credentials())
            .filter(|_| !style.anonymous);
        match self {
            Front::Socks5 { .. } => socks5(stream, dest, credentials, style).await,
            Front::Connect { .. } => connect(stream, dest, credentials, style)
                .await
                .map(|()| None),
        }
    }

    /// Whether this is a SOCKS5 front.
    pub fn is_socks5(&self) -> bool {
        matches!(self, Front::Socks5 { .. })
    }
}

/// How a handshake is written: the front cases vary it; every other case uses the default.
#[derive(Debug, Clone, Default)]
pub struct Style {
    /// Every byte in a write of its own, a moment apart: a front must not assume that a
    /// message arrives in one read.
    pub split: bool,
    /// Data written in the same write as the request, before any reply: the client's first
    /// bytes for the destination.
    pub trailing: Vec<u8>,
    /// Credentials to give instead of the front's own (wrong ones, to see them rejected).
    pub credentials: Option<(String, String)>,
    /// The SOCKS5 command (1 CONNECT, 2 BIND, 3 UDP ASSOCIATE); CONNECT when unset.
    pub command: Option<u8>,
    /// SOCKS5: the greeting, the credentials and the request in one write, before any answer.
    pub pipelined: bool,
    /// Check what the other cases let pass so that one mistake costs only the case about it:
    /// the version byte of RFC 1929's status reply.
    pub strict: bool,
    /// HTTP: the `Proxy-Authorization` header's name written in lower case, which names the
    /// same field (header names are case-insensitive, RFC 9110 §5.1).
    pub lowercase_header: bool,
    /// No credentials at all, whatever the front requires (SOCKS5: a greeting that offers
    /// only "no authentication"; HTTP: no `Proxy-Authorization`): a front that requires them
    /// must refuse.
    pub anonymous: bool,
    /// The destination named by this host name instead of its address (SOCKS5 address type
    /// 0x03; HTTP `CONNECT name:port`), as clients that leave resolving to the proxy do.
    pub name: Option<String>,
}

/// Writes `data` as `style` says: at once, or a byte at a time.
async fn send(stream: &mut TcpStream, data: &[u8], style: &Style) -> Result<(), Refused> {
    if !style.split {
        return stream.write_all(data).await.map_err(broken);
    }
    for byte in data {
        stream
            .write_all(std::slice::from_ref(byte))
            .await
            .map_err(broken)?;
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    Ok(())
}

fn broken(e: std::io::Error) -> Refused {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            Refused::Broken("the proxy closed the connection during the handshake".into())
        }
        _ => Refused::Broken(format!("the handshake failed: {e}")),
    }
}

/// What a SOCKS5 reply code means (RFC 1928 §6).
pub fn socks5_meaning(code: u8) -> &'static str {
    match code {
        0x00 => "succeeded",
        0x01 => "general failure",
        0x02 => "not allowed by ruleset",
        0x03 => "network unreachable",
        0x04 => "host unreachable",
        0x05 => "connection refused",
        0x06 => "TTL expired",
        0x07 => "command not supported",
        0x08 => "address type not supported",
        _ => "unassigned",
    }
}

async fn socks5(
    stream: &mut TcpStream,
    dest: SocketAddr,
    credentials: Option<&(String, String)>,
    style: &Style,
) -> Result<Option<SocketAddr>, Refused> {
    let method = if credentials.is_some() { 2 } else { 0 };
    let greeting = [5, 1, method];
    let auth = credentials.map(|(user, pass)| {
        let mut auth = vec![1, user.len() as u8];
        auth.extend_from_slice(user.as_bytes());
        auth.push(pass.len() as u8);
        auth.extend_from_slice(pass.as_bytes());
        auth
    });
    let mut request = vec![5, style.command.unwrap_or(1), 0];
    match dest {
        _ if style.name.is_some() => {
            let name = style.name.as_deref().unwrap_or_default();
            request.push(3);
            request.push(name.len() as u8);
            request.extend_from_slice(name.as_bytes());
        }
        SocketAddr::V4(v4) => {
            request.push(1);
            request.extend_from_slice(&v4.ip().octets());
        }
        SocketAddr::V6(v6) => {
            request.push(4);
            request.extend_from_slice(&v6.ip().octets());
        }
    }
    request.extend_from_slice(&dest.port().to_be_bytes());
    if style.pipelined {
        // Every message in one write, before any answer: what a client that knows the
        // front's method sends (R13: however the handshake is split into writes).
        let mut all = greeting.to_vec();
        all.extend(auth.iter().flatten());
        all.extend_from_slice(&request);
        all.extend_from_slice(&style.trailing);
        send(stream, &all, style).await?;
        socks5_method_choice(stream, method).await?;
        if auth.is_some() {
            socks5_auth_status(stream, style).await?;
        }
    } else {
        send(stream, &greeting, style).await?;
        socks5_method_choice(stream, method).await?;
        if let Some(auth) = &auth {
            send(stream, auth, style).await?;
            socks5_auth_status(stream, style).await?;
        }
        if style.split {
            send(stream, &request, style).await?;
            send(stream, &style.trailing, &Style::default()).await?;
        } else {
            request.extend_from_slice(&style.trailing);
            send(stream, &request, style).await?;
        }
    }
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await.map_err(broken)?;
    if head[0] != 5 {
        return Err(Refused::Broken(format!(
            "SOCKS5: a reply of version {}, expected 5",
            head[0]
        )));
    }
    let refused = || Refused::Answered {
        code: u16::from(head[1]),
        text: format!(
            "SOCKS5 reply {:#04x} ({})",
            head[1],
            socks5_meaning(head[1])
        ),
        head: String::new(),
    };
    // The bound address is read off whatever the code, so that a failure reply is taken
    // whole; some fronts cut a failure reply short, and then the code is what counts.
    let address = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut len = [0u8; 1];
            match stream.read_exact(&mut len).await {
                Ok(_) => usize::from(len[0]),
                Err(_) if head[1] != 0 => return Err(refused()),
                Err(e) => return Err(broken(e)),
            }
        }
        _ if head[1] != 0 => return Err(refused()),
        other => {
            return Err(Refused::Broken(format!(
                "SOCKS5: a reply with address type {other}"
            )))
        }
    };
    let mut bound = vec![0u8; address + 2];
    let read = stream.read_exact(&mut bound).await;
    if head[1] != 0 {
        return Err(refused());
    }
    read.map_err(broken)?;
    let port = u16::from_be_bytes([bound[address], bound[address + 1]]);
    Ok(match head[3] {
        1 => <[u8; 4]>::try_from(&bound[..4])
            .ok()
            .map(|ip| SocketAddr::from((ip, port))),
        4 => <[u8; 16]>::try_from(&bound[..16])
            .ok()
            .map(|ip| SocketAddr::from((ip, port))),
        _ => None,
    })
}

/// Reads the front's method choice: `method`, or a refusal (0xFF).
async fn socks5_method_choice(stream: &mut TcpStream, method: u8) -> Result<(), Refused> {
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await.map_err(broken)?;
    match choice {
        [5, 0xff] => Err(Refused::Answered {
            code: 0x1ff,
            text: "SOCKS5: no acceptable authentication method (0xFF)".into(),
            head: String::new(),
        }),
        [5, m] if m == method => Ok(()),
        other => Err(Refused::Broken(format!(
            "SOCKS5: the method choice was {other:02x?}, expected [05, {method:02x}]"
        ))),
    }
}

/// Reads the front's username/password status (RFC 1929). With `style.strict`, its version
/// byte must be 0x01, as RFC 1929 says; the other cases let a wrong one pass, so that this one
/// mistake costs the front case that checks it and not every case.
async fn socks5_auth_status(stream: &mut TcpStream, style: &Style) -> Result<(), Refused> {
    let mut status = [0u8; 2];
    stream.read_exact(&mut status).await.map_err(broken)?;
    if style.strict && status[0] != 1 {
        return Err(Refused::Broken(format!(
            "SOCKS5: the username/password status came with version {:#04x}, expected 0x01 (RFC 1929)",
            status[0]
        )));
    }
    if status[1] != 0 {
        return Err(Refused::Answered {
            code: 0x100 + u16::from(status[1]),
            text: format!("SOCKS5: authentication failed (status {:#04x})", status[1]),
            head: String::new(),
        });
    }
    Ok(())
}

/// Longest HTTP response head tprox reads.
const MAX_HEAD: usize = 16 * 1024;

async fn connect(
    stream: &mut TcpStream,
    dest: SocketAddr,
    credentials: Option<&(String, String)>,
    style: &Style,
) -> Result<(), Refused> {
    let target = match &style.name {
        Some(name) => format!("{name}:{}", dest.port()),
        None => dest.to_string(),
    };
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, pass)) = credentials {
        let name = if style.lowercase_header {
            "proxy-authorization"
        } else {
            "Proxy-Authorization"
        };
        request.push_str(&format!(
            "{name}: Basic {}\r\n",
            base64(format!("{user}:{pass}").as_bytes())
        ));
    }
    request.push_str("\r\n");
    if style.split {
        send(stream, request.as_bytes(), style).await?;
        send(stream, &style.trailing, &Style::default()).await?;
    } else {
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(&style.trailing);
        send(stream, &bytes, style).await?;
    }
    // Interim answers (1xx other than 101) come before the final one: RFC 9110 §15.2 says a
    // client MUST parse and skip them.
    let (head, status_line, code) = loop {
        let head = read_head(stream).await?;
        let text = String::from_utf8_lossy(&head).into_owned();
        let status_line = text.lines().next().unwrap_or("").trim().to_string();
        let code = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok());
        match code {
            Some(100..=199) if code != Some(101) && head.ends_with(b"\r\n\r\n") => continue,
            _ => break (head, status_line, code),
        }
    };
    let text = String::from_utf8_lossy(&head);
    match code {
        _ if !status_line.starts_with("HTTP/1.") => Err(Refused::Broken(format!(
            "HTTP: the answer to CONNECT is not an HTTP response: '{status_line}'"
        ))),
        Some(200..=299) if head.ends_with(b"\r\n\r\n") => Ok(()),
        Some(code) if head.ends_with(b"\r\n\r\n") => Err(Refused::Answered {
            code,
            text: format!("HTTP '{status_line}'"),
            head: text.into_owned(),
        }),
        _ => Err(Refused::Broken(format!(
            "HTTP: an incomplete or malformed response: '{status_line}'"
        ))),
    }
}

/// Whether an HTTP front may keep its connection open after this error answer (its head,
/// status line included). HTTP/1.1 connections persist unless a side says `Connection: close`
/// (RFC 9112 §9.3), and a failed CONNECT is an ordinary response, not a tunnel (RFC 9110
/// §9.3.6), so the front may wait for the client's next request. It can only do so if the
/// client can tell where the answer ends: with a `Content-Length` or a chunked body (RFC 9112
/// §6.3); otherwise the body runs to the close, and the front must close. An HTTP/1.0 answer
/// persists only with `Connection: keep-alive`.
pub(crate) fn http_may_persist(head: &str) -> bool {
    let mut lines = head.lines();
    let http11 = lines
        .next()
        .is_some_and(|status| status.starts_with("HTTP/1.1"));
    let (mut close, mut keep_alive, mut delimited) = (false, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.to_ascii_lowercase());
        match name.as_str() {
            "connection" => {
                close |= value.split(',').any(|v| v.trim() == "close");
                keep_alive |= value.split(',').any(|v| v.trim() == "keep-alive");
            }
            "content-length" => delimited = true,
            "transfer-encoding" => delimited |= value.trim_end().ends_with("chunked"),
            _ => {}
        }
    }
    delimited && !close && (http11 || keep_alive)
}

/// Reads one HTTP response head, byte by byte, so that nothing behind it (the destination's
/// first bytes) is taken. A head cut short by the close is returned as it is, for the caller
/// to judge.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, Refused> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(Refused::Broken(format!(
                "HTTP: a response head longer than {MAX_HEAD} bytes"
            )));
        }
        let mut byte = [0u8; 1];
        match stream.read(&mut byte).await {
            Ok(0) if head.is_empty() => {
                return Err(Refused::Broken(
                    "the proxy closed the connection without answering CONNECT".into(),
                ))
            }
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(broken(e)),
        }
    }
    Ok(head)
}

fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fronts_parse_and_hide_the_password() {
        let front: Front = "socks5:alice:s3cret".parse().unwrap();
        assert_eq!(front.to_string(), "socks5:alice:***");
        assert_eq!(
            front.credentials(),
            Some(&("alice".to_string(), "s3cret".to_string()))
        );
        assert_eq!(
            "connect".parse::<Front>().unwrap(),
            Front::Connect { credentials: None }
        );
        assert!("socks4"
            .parse::<Front>()
            .unwrap_err()
            .contains("unknown front"));
        assert!("socks5:alice"
            .parse::<Front>()
            .unwrap_err()
            .contains("KIND:USER:PASS"));
    }

    /// An HTTP front that reads one request head and answers with `answer`; its client
    /// stream is the task's result, so that it stays open until the test has read.
    async fn fake_http_front(
        answer: &'static [u8],
    ) -> (SocketAddr, tokio::task::JoinHandle<TcpStream>) {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let front = tokio::spawn(async move {
            let (mut client, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                client.read_exact(&mut byte).await.unwrap();
                request.push(byte[0]);
            }
            client.write_all(answer).await.unwrap();
            client
        });
        (addr, front)
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_the_stream_starts_behind_the_final_one() {
        let (addr, front) = fake_http_front(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\n\r\nfrom the destination").await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let connect = Front::Connect { credentials: None };
        connect.handshake(&mut stream, addr).await.unwrap();
        let mut rest = [0u8; 20];
        stream.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"from the destination");
        drop(front.await.unwrap());
    }

    #[tokio::test]
    async fn switching_protocols_is_not_an_answer_to_connect() {
        let (addr, front) = fake_http_front(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").await;
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let connect = Front::Connect { credentials: None };
        let answer = connect.handshake(&mut stream, addr).await;
        assert!(
            matches!(answer, Err(Refused::Answered { code: 101, .. })),
            "{answer:?}"
        );
        drop(front.await.unwrap());
    }

    #[test]
    fn basic_credentials_are_standard_base64() {
        // RFC 7617's example.
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
    }
}
