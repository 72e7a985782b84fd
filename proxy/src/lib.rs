//! The reference TCP proxy.
//!
//! `tprox-relay DEST_HOST DEST_PORT LISTEN_PORT` accepts connections on LISTEN_PORT and forwards each
//! one to DEST_HOST:DEST_PORT over a connection of its own, meeting every rule of the tprox
//! contract (`docs/contract.md`). One process can also serve several mappings, tunnel
//! through an HTTP proxy, and log one line per connection:
//!
//! * [`relay`] moves bytes for one connection pair: a bounded buffer per direction (backpressure,
//!   R4), half-close after flushing (R5), the stall timeout (R7), and abortive close on a reset or a
//!   failed write (R6); [`relay::splice`] does the same without copying, on Linux.
//! * [`server`] listens, accepts, dials the destination (directly or through [`via`]), keeps
//!   serving whatever a single pair does (R2, R8, R11), and stops gracefully; [`sni`] picks the
//!   destination of a TLS client by the server name it asks for; [`front`] lets each client
//!   name its destination itself, with a SOCKS5 or HTTP CONNECT handshake; [`proxy_header`]
//!   tells the destination who the client was (the PROXY protocol, `--send-proxy`).
//! * [`udp`] forwards datagrams: a session per client address, with its own socket towards the
//!   destination, closed when idle.
//! * [`mapping`] says what is forwarded where; `cli` (the `cli` feature, on by default) turns the command line into mappings, and
//!   bad input into one clear line on stderr.

#![warn(missing_docs)]

#[cfg(feature = "cli")]
pub mod cli;
pub mod front;
pub mod mapping;
pub mod proxy_header;
pub mod relay;
pub mod server;
pub mod sni;
pub mod udp;
pub mod via;

/// Bytes buffered per direction of a pair by the buffered copy. Together with the kernel's
/// socket buffers this is all the proxy ever holds for one connection, whatever the peers do (R4).
pub const BUFFER_SIZE: usize = 64 * 1024;

/// `host:port`, with an IPv6 address in brackets.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Writes all of `data` to `to` before the relay starts: the destination's bytes that came with
/// an HTTP proxy's answer, a client's ClientHello or the bytes behind its request, a front's
/// replies.
pub(crate) async fn write_early(
    to: &tokio::net::TcpStream,
    mut data: &[u8],
) -> std::io::Result<()> {
    while !data.is_empty() {
        to.writable().await?;
        match to.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
