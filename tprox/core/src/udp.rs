//! What a UDP run works with (`tprox --udp`): the destination's UDP socket, which a case can
//! close (so that the proxy's datagrams meet ICMP port unreachable) and open again; clients;
//! and the checks before the cases and around each one, which echo a datagram through.
//!
//! UDP may lose datagrams, and loopback loses them only where a socket's buffer is full. The
//! checks that only ask whether the proxy forwards at all therefore send again, a few times
//! within [`PROMPT`], before they conclude that it does not; the cases that judge delivery
//! send one datagram at a time, or few enough that no buffer fills.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{timeout, Instant};

use crate::harness::PROMPT;
use crate::proxy::HOST;

/// The largest UDP payload over IPv4: 65,535 less 20 bytes of IP header and 8 of UDP header.
pub const DATAGRAM_MAX: usize = 65_507;

/// The destination's UDP socket, on the port number the TCP destination has (the run's
/// `{dest_port}`).
pub struct UdpDestination {
    port: u16,
    socket: RwLock<Option<Arc<UdpSocket>>>,
}

impl UdpDestination {
    /// Binds the UDP port `port` on loopback.
    pub async fn bind(port: u16) -> io::Result<Self> {
        let socket = UdpSocket::bind((HOST, port)).await?;
        Ok(UdpDestination {
            port,
            socket: RwLock::new(Some(Arc::new(socket))),
        })
    }

    /// The socket, while the destination is open.
    pub fn socket(&self) -> Option<Arc<UdpSocket>> {
        self.socket
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the destination is open (not between [`UdpDestination::close`] and
    /// [`UdpDestination::reopen`]).
    pub fn is_open(&self) -> bool {
        self.socket().is_some()
    }

    /// Closes the socket: datagrams to the port are answered with ICMP port unreachable from
    /// now on. A case that holds a clone of the socket keeps it open until it drops it.
    pub fn close(&self) {
        self.socket
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// Opens the port again (after [`UdpDestination::close`]); a no-op while open.
    pub async fn reopen(&self) -> io::Result<()> {
        if self.is_open() {
            return Ok(());
        }
        let socket = UdpSocket::bind((HOST, self.port)).await?;
        *self.socket.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(socket));
        Ok(())
    }
}

/// Whether a UDP socket bound to local port `port` exists on this machine, in any process
/// (`/proc/net/udp` and `udp6`); `Err` says why the tables cannot be read. Read, never probed
/// by binding: a bind of our own, however brief, could take the port from the proxy that is
/// about to bind it.
pub fn port_bound(port: u16) -> Result<bool, String> {
    let mut any = false;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(text) => text,
            Err(_) if table.ends_with('6') => continue,
            Err(e) => return Err(format!("cannot read {table}: {e}")),
        };
        // Each line: `sl local_address rem_address ...`, an address as HEXADDR:HEXPORT.
        any |= text.lines().skip(1).any(|line| {
            line.split_whitespace()
                .nth(1)
                .and_then(|local| local.rsplit_once(':'))
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok())
                == Some(port)
        });
    }
    Ok(any)
}

/// Reads off and drops whatever is waiting at `socket` now: a case starts with nothing left
/// from the checks before it.
pub fn drain(socket: &UdpSocket) {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
    // Straight from the socket (non-blocking, as tokio made it): tokio's own `try_recv`
    // answers from its readiness cache, which may not yet know of data waiting.
    while socket2::SockRef::from(socket).recv(&mut buf).is_ok() {}
}

/// A client of the proxy: a socket of its own on loopback (its own address and port, so its
/// own session), connected to the proxy, so that only the proxy's datagrams reach it.
pub async fn client(proxy: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind((HOST, 0)).await?;
    socket.connect(proxy).await?;
    Ok(socket)
}

/// Receives one datagram within `limit`: its bytes and who sent it; `None` if none came.
pub async fn recv_within(socket: &UdpSocket, limit: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; DATAGRAM_MAX + 1];
    let deadline = Instant::now() + limit;
    loop {
        match timeout(limit, socket.recv_from(&mut buf)).await {
            Ok(Ok((len, from))) => return Some((buf[..len].to_vec(), from)),
            // An ICMP error reported for an earlier datagram: receive on.
            Ok(Err(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            _ => return None,
        }
    }
}

/// Sends `token` from a fresh client until it reaches the destination and the destination's
/// answer comes back, as the checks before and after a case do: `Err` says what went wrong.
/// Datagrams other than the token (a case's leftovers) are passed over at both ends.
pub async fn echo(proxy: SocketAddr, dest: &UdpDestination, token: &[u8]) -> Result<(), String> {
    let Some(server) = dest.socket() else {
        return Err("the destination's UDP socket is closed".into());
    };
    let client = client(proxy)
        .await
        .map_err(|e| format!("cannot open a UDP client socket: {e}"))?;
    let deadline = Instant::now() + PROMPT;
    let mut reached: Option<SocketAddr> = None;
    // Sent again every second until it arrives, then its answer: UDP may drop a datagram, and
    // a proxy that has just started may not read at once. Only what has not arrived is sent
    // again, so that no copy is left to reach the destination during the case that follows.
    while Instant::now() < deadline {
        match reached {
            None => {
                let _ = client.send(token).await;
            }
            Some(from) => {
                let _ = server.send_to(token, from).await;
            }
        }
        let round = Instant::now() + Duration::from_secs(1);
        while let Some(wait) = round.checked_duration_since(Instant::now()) {
            tokio::select! {
                got = recv_within(&server, wait) => {
                    if let Some((data, from)) = got.filter(|(data, _)| data == token) {
                        if reached.is_none() {
                            reached = Some(from);
                            let _ = server.send_to(&data, from).await;
                        }
                    }
                }
                got = recv_within(&client, wait) => {
                    if got.is_some_and(|(data, _)| data == token) {
                        return Ok(());
                    }
                }
            }
        }
    }
    Err(if reached.is_some() {
        format!(
            "a datagram reached the destination, but its answer never came back to the client within {} s",
            PROMPT.as_secs()
        )
    } else {
        format!(
            "no datagram sent to the proxy reached the destination within {} s (sent every second)",
            PROMPT.as_secs()
        )
    })
}
