//! The PROXY protocol header the proxy sends first on each connection it opens to a
//! destination (`--send-proxy v1|v2`, haproxy's `doc/proxy-protocol.txt`), so that the
//! destination learns the client's address and port and the address the client connected to.
//! The header is written before any byte of the client's, in one write.

use std::net::SocketAddr;

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
