//! Tunnelling through an HTTP proxy with `CONNECT HOST:PORT` (RFC 9110 §9.3.6), for networks
//! where the destination is reachable only that way.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::host_port;

/// An HTTP proxy given as `http://[USER:PASS@]HOST:PORT`.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpProxy {
    /// The HTTP proxy's host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// `USER:PASS`, decoded, for Basic authentication.
    credentials: Option<(String, String)>,
}

impl FromStr for HttpProxy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if !text.contains("://") {
            return Err(format!(
                "'{text}' is not a URL like http://[USER:PASS@]HOST:PORT (the scheme is missing)"
            ));
        }
        let url = url::Url::parse(text).map_err(|e| {
            format!("'{text}' is not a URL like http://[USER:PASS@]HOST:PORT ({e})")
        })?;
        if url.scheme() != "http" {
            return Err(format!(
                "'{text}': only http:// proxies are supported (CONNECT over plain HTTP)"
            ));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(format!("'{text}': a proxy URL has no path, only HOST:PORT"));
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(addr)) => addr.to_string(),
            Some(host) => host.to_string(),
            None => return Err(format!("'{text}' has no host")),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (user, pass) => Some((decode(user), decode(pass.unwrap_or("")))),
        };
        Ok(HttpProxy {
            host,
            port: url.port_or_known_default().unwrap_or(80),
            credentials,
        })
    }
}

impl fmt::Display for HttpProxy {
    /// The URL with the password masked, fit for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.credentials {
            Some((user, _)) => format!("{user}:***@"),
            None => String::new(),
        };
        write!(f, "http://{auth}{}", host_port(&self.host, self.port))
    }
}

impl fmt::Debug for HttpProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a tunnel could not be opened.
#[derive(Debug)]
pub enum TunnelError {
    /// The HTTP proxy itself could not be reached (the case for `--direct-fallback`).
    Unreachable(std::io::Error),
    /// The HTTP proxy answered, but not with 2xx: its status line, e.g. `407 Proxy
    /// Authentication Required`.
    Refused(String),
    /// The conversation broke off or made no sense.
    Protocol(String),
}

impl fmt::Display for TunnelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelError::Unreachable(e) => write!(f, "HTTP proxy unreachable: {e}"),
            TunnelError::Refused(status) => write!(f, "HTTP proxy refused CONNECT: {status}"),
            TunnelError::Protocol(what) => write!(f, "HTTP proxy: {what}"),
        }
    }
}

/// Longest response head accepted: a proxy that sends more is not answering CONNECT.
const MAX_HEAD: usize = 16 * 1024;

/// An open tunnel, and any bytes the destination sent that arrived with the proxy's answer:
/// they belong to the client and go to it first.
pub struct Tunnel {
    /// The connection to the destination, through the HTTP proxy.
    pub stream: TcpStream,
    /// Bytes the destination sent that arrived with the answer.
    pub early_data: Vec<u8>,
}

impl HttpProxy {
    /// Connects to the proxy and asks it for a tunnel to `host:port`.
    pub async fn connect(&self, host: &str, port: u16) -> Result<Tunnel, TunnelError> {
        let mut stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(TunnelError::Unreachable)?;
        let _ = stream.set_nodelay(true);
        let target = host_port(host, port);
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some((user, pass)) = &self.credentials {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
        }
        request.push_str("\r\n");
        let broken = |e: std::io::Error| TunnelError::Protocol(format!("connection broke: {e}"));
        stream.write_all(request.as_bytes()).await.map_err(broken)?;

        let mut head = Vec::with_capacity(512);
        let end = loop {
            if let Some(end) = find_head_end(&head) {
                break end;
            }
            if head.len() > MAX_HEAD {
                return Err(TunnelError::Protocol("response head too long".into()));
            }
            let mut chunk = [0u8; 2048];
            let n = stream.read(&mut chunk).await.map_err(broken)?;
            if n == 0 {
                return Err(TunnelError::Protocol(
                    "closed before answering CONNECT".into(),
                ));
            }
            head.extend_from_slice(&chunk[..n]);
        };
        let status_line = head[..end]
            .split(|&b| b == b'\n')
            .next()
            .map(|line| String::from_utf8_lossy(line).trim().to_string())
            .unwrap_or_default();
        let status = status_line
            .split_once(' ')
            .map_or("", |(_, s)| s)
            .to_string();
        if !status_line.starts_with("HTTP/1.") || status.len() < 3 {
            return Err(TunnelError::Protocol(format!(
                "not an HTTP answer: '{status_line}'"
            )));
        }
        if !status.starts_with('2') {
            return Err(TunnelError::Refused(status));
        }
        Ok(Tunnel {
            stream,
            early_data: head.split_off(end),
        })
    }
}

/// Index just past the blank line that ends an HTTP head.
fn find_head_end(head: &[u8]) -> Option<usize> {
    head.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_display_without_the_password() {
        let proxy: HttpProxy = "http://alice:s%40cret@127.0.0.1:3128".parse().unwrap();
        assert_eq!(proxy.host, "127.0.0.1");
        assert_eq!(proxy.port, 3128);
        assert_eq!(
            proxy.credentials,
            Some(("alice".to_string(), "s@cret".to_string()))
        );
        assert_eq!(proxy.to_string(), "http://alice:***@127.0.0.1:3128");
        let proxy: HttpProxy = "http://[::1]:8080".parse().unwrap();
        assert_eq!((proxy.host.as_str(), proxy.port), ("::1", 8080));
        assert!("https://h:1"
            .parse::<HttpProxy>()
            .unwrap_err()
            .contains("only http://"));
        assert!("h:1".parse::<HttpProxy>().is_err());
        assert!("http://h:1/x"
            .parse::<HttpProxy>()
            .unwrap_err()
            .contains("no path"));
    }

    #[test]
    fn a_head_ends_at_the_blank_line() {
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n\r\nhello"), Some(19));
        assert_eq!(find_head_end(b"HTTP/1.1 200 OK\r\n"), None);
    }
}
