//! Routing TLS connections by the server name in their ClientHello (SNI), without terminating
//! TLS: the proxy reads the client's first record, picks the destination by name, and sends
//! the record on unchanged, so the handshake is between the client and the destination.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout;

/// Where names go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routes {
    /// Server name (lower case) or `*.domain` to `(host, port)`.
    pub names: BTreeMap<String, (String, u16)>,
    /// Close connections whose name is unknown (or missing) instead of sending them to the
    /// mapping's destination.
    pub unknown_closed: bool,
}

impl Routes {
    /// True when no server name is routed.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Adds `NAME=HOST:PORT`.
    pub fn add(&mut self, spec: &str) -> Result<(), String> {
        let (name, dest) = spec.split_once('=').ok_or_else(|| {
            format!("'{spec}' is not NAME=HOST:PORT (for example a.example=10.0.0.5:443)")
        })?;
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || name.contains(['/', ' ', ':']) {
            return Err(format!("'{spec}': '{name}' is not a server name"));
        }
        let (host, port) = dest
            .rsplit_once(':')
            .and_then(|(h, p)| {
                Some((
                    h.trim_matches(['[', ']']),
                    p.parse::<u16>().ok().filter(|p| *p > 0)?,
                ))
            })
            .filter(|(h, _)| !h.is_empty())
            .ok_or_else(|| format!("'{spec}': '{dest}' is not HOST:PORT"))?;
        self.names.insert(name, (host.to_string(), port));
        Ok(())
    }

    /// The destination for `name`: an exact entry first, then the longest `*.` suffix.
    pub fn route(&self, name: &str) -> Option<&(String, u16)> {
        let name = name.to_ascii_lowercase();
        if let Some(dest) = self.names.get(&name) {
            return Some(dest);
        }
        let mut rest = name.as_str();
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(dest) = self.names.get(&format!("*.{parent}")) {
                return Some(dest);
            }
            rest = parent;
        }
        None
    }
}

/// The client's first TLS record, read whole, and the server name it asks for.
pub struct Hello {
    /// Everything read from the client so far: it goes to the destination first.
    pub bytes: Vec<u8>,
    /// The server name the ClientHello asks for, if any.
    pub server_name: Option<String>,
}

/// TLS record header: type, version, length.
const RECORD_HEADER: usize = 5;
/// A record's largest length (TLSPlaintext: 2^14, plus room for what some clients send).
const MAX_RECORD: usize = 16384 + 2048;

/// Reads the client's first record, for at most `limit`. A client that is not speaking TLS
/// gives a [`Hello`] without a name as soon as its first bytes show it.
pub async fn read_hello(client: &TcpStream, limit: Duration) -> io::Result<Hello> {
    let mut bytes = Vec::with_capacity(1024);
    let read = async {
        loop {
            let wanted = match bytes.get(..RECORD_HEADER) {
                Some(header) if header[0] != 0x16 => return Ok(()), // not a handshake record
                Some(header) => {
                    RECORD_HEADER + (usize::from(header[3]) << 8 | usize::from(header[4]))
                }
                None => RECORD_HEADER,
            };
            if bytes.len() >= wanted || wanted > RECORD_HEADER + MAX_RECORD {
                return Ok(());
            }
            client.readable().await?;
            let mut chunk = [0u8; 4096];
            match client.try_read(&mut chunk[..(wanted - bytes.len()).min(4096)]) {
                Ok(0) => return Ok(()),
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    };
    match timeout(limit, read).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no ClientHello within the stall timeout",
            ))
        }
    }
    let server_name = server_name(&bytes);
    Ok(Hello { bytes, server_name })
}

/// The host name in a ClientHello record's server_name extension.
pub fn server_name(record: &[u8]) -> Option<String> {
    use tls_parser::{
        parse_tls_client_hello_extensions, parse_tls_plaintext, SNIType, TlsExtension, TlsMessage,
        TlsMessageHandshake,
    };
    let (_, plaintext) = parse_tls_plaintext(record).ok()?;
    let hello = plaintext.msg.iter().find_map(|msg| match msg {
        TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) => Some(hello),
        _ => None,
    })?;
    let (_, extensions) = parse_tls_client_hello_extensions(hello.ext?).ok()?;
    extensions.iter().find_map(|ext| match ext {
        TlsExtension::SNI(names) => names
            .iter()
            .find(|(kind, _)| *kind == SNIType::HostName)
            .and_then(|(_, name)| std::str::from_utf8(name).ok())
            .map(str::to_string),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_win_over_wildcards_and_case_does_not_matter() {
        let mut routes = Routes::default();
        routes.add("a.example=127.0.0.1:1").unwrap();
        routes.add("*.example=127.0.0.1:2").unwrap();
        routes.add("*.deep.example=[::1]:3").unwrap();
        assert_eq!(routes.route("A.Example").unwrap().1, 1);
        assert_eq!(routes.route("b.example").unwrap().1, 2);
        assert_eq!(
            routes.route("x.deep.example").unwrap(),
            &("::1".to_string(), 3)
        );
        assert_eq!(routes.route("example"), None);
        assert_eq!(routes.route("other.test"), None);
        assert!(routes
            .add("a.example")
            .unwrap_err()
            .contains("NAME=HOST:PORT"));
        assert!(routes.add("a.example=h").unwrap_err().contains("HOST:PORT"));
        assert!(routes.add("a.example=h:0").is_err());
    }

    #[test]
    fn a_record_that_is_not_a_client_hello_has_no_name() {
        assert_eq!(server_name(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(server_name(&[0x16, 3, 1, 0, 4, 1, 0, 0, 0]), None);
    }
}
