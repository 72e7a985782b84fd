//! UDP forwarding: a mapping whose listener is a UDP socket (`-p udp:...`, `--udp`).
//!
//! UDP has no connections, so the proxy makes sessions of its own: each client address and port
//! is one session, with a socket of its own connected to the destination, so that the
//! destination's replies on that socket go back to that client and to no other. A session ends
//! when nothing has passed either way for the mapping's idle timeout (its stall timeout), and
//! its socket is closed; the client's next datagram opens a new one.
//!
//! Nothing is queued in the proxy: a datagram is read into one buffer and sent on at once, or
//! dropped when the socket it goes to cannot take it (a full send buffer). Memory is therefore
//! bounded by the sessions' number (at most the mapping's `max_connections`), whatever the peers
//! send. A destination that answers with ICMP port unreachable makes the next operation on that
//! session's socket fail with ECONNREFUSED; the session stays, and no other one notices.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use crate::mapping::Mapping;

/// The largest UDP payload over IPv4 (65,535 less the IP and UDP headers), and a byte more, so
/// that a datagram the buffer truncated would be seen as one.
const DATAGRAM_MAX: usize = 65_507 + 1;

/// Binds a UDP mapping's socket, so that a port in use is reported before anything else
/// happens. `::` listens on IPv6 and IPv4 both.
pub fn bind(mapping: &Mapping) -> io::Result<std::net::UdpSocket> {
    let addr = (mapping.bind.as_str(), mapping.local_port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "the bind address has no address")
        })?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// One client's session: its socket towards the destination and when anything last passed.
struct Session {
    socket: Arc<UdpSocket>,
    /// Milliseconds since the mapping started, at the last datagram either way: what the idle
    /// timeout is measured from. An atomic, so that neither direction waits for the other.
    last: Arc<AtomicU64>,
}

/// What a UDP mapping shares between its receiving loop and its sessions' tasks.
struct Shared {
    listener: UdpSocket,
    mapping: Mapping,
    sessions: Mutex<HashMap<SocketAddr, Session>>,
    started: Instant,
    verbose: bool,
}

impl Shared {
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// Serves a bound UDP mapping until the task is dropped (the proxy stops).
pub async fn serve(socket: std::net::UdpSocket, mapping: Mapping, verbose: bool) -> io::Result<()> {
    let shared = Arc::new(Shared {
        listener: UdpSocket::from_std(socket)?,
        mapping,
        sessions: Mutex::new(HashMap::new()),
        started: Instant::now(),
        verbose,
    });
    let mut buf = vec![0u8; DATAGRAM_MAX];
    loop {
        let (len, client) = match shared.listener.recv_from(&mut buf).await {
            Ok(received) => received,
            // An ICMP error for a reply sent to a client that has gone: not the listener's.
            Err(e) if transient(&e) => continue,
            Err(e) => return Err(e),
        };
        let socket = match session(&shared, client).await {
            Some(socket) => socket,
            None => continue,
        };
        // Never waits: a datagram the socket cannot take now is dropped, as the network may.
        match send(&socket, &buf[..len], None) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || transient(&e) => {}
            Err(e) => {
                if shared.verbose {
                    eprintln!("tprox-relay: udp {client}: sending to the destination: {e}");
                }
            }
        }
    }
}

/// The socket of `client`'s session, opened if it has none (`None`: it cannot be, said on
/// stderr, or the mapping has its most sessions).
async fn session(shared: &Arc<Shared>, client: SocketAddr) -> Option<Arc<UdpSocket>> {
    {
        let sessions = shared.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(session) = sessions.get(&client) {
            session.last.store(shared.now(), Ordering::Relaxed);
            return Some(session.socket.clone());
        }
        if sessions.len() >= shared.mapping.max_connections {
            return None;
        }
    }
    let socket = match open(&shared.mapping).await {
        Ok(socket) => Arc::new(socket),
        Err(e) => {
            eprintln!(
                "tprox-relay: udp {client}: cannot open a socket to {}: {e}",
                crate::host_port(&shared.mapping.dest_host, shared.mapping.dest_port)
            );
            return None;
        }
    };
    let last = Arc::new(AtomicU64::new(shared.now()));
    shared
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            client,
            Session {
                socket: socket.clone(),
                last: last.clone(),
            },
        );
    if shared.verbose {
        eprintln!("tprox-relay: udp {client}: session opened");
    }
    tokio::spawn(replies(shared.clone(), client, socket.clone(), last));
    Some(socket)
}

/// A socket connected to the mapping's destination, resolved again for each session.
async fn open(mapping: &Mapping) -> io::Result<UdpSocket> {
    let dest = tokio::net::lookup_host((mapping.dest_host.as_str(), mapping.dest_port))
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
    let any: SocketAddr = if dest.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(any).await?;
    socket.connect(dest).await?;
    Ok(socket)
}

/// A session's other half: the destination's datagrams back to the client, until the session
/// has been idle for the idle timeout; then it is removed and its socket closed.
async fn replies(
    shared: Arc<Shared>,
    client: SocketAddr,
    socket: Arc<UdpSocket>,
    last: Arc<AtomicU64>,
) {
    let idle = shared.mapping.stall_timeout;
    let mut buf = vec![0u8; DATAGRAM_MAX];
    loop {
        let since = shared.now().saturating_sub(last.load(Ordering::Relaxed));
        let left = idle.saturating_sub(Duration::from_millis(since));
        if left.is_zero() {
            let mut sessions = shared.sessions.lock().unwrap_or_else(|e| e.into_inner());
            // Checked again under the lock, which the receiving loop holds while it marks a
            // datagram: one that came meanwhile keeps the session.
            let since = shared.now().saturating_sub(last.load(Ordering::Relaxed));
            if Duration::from_millis(since) >= idle {
                sessions.remove(&client);
                if shared.verbose {
                    eprintln!("tprox-relay: udp {client}: session idle, closed");
                }
                return;
            }
            continue;
        }
        let len = match tokio::time::timeout(left, socket.recv(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(len)) => len,
            // The destination's port was unreachable (ICMP): this session's business alone.
            Ok(Err(e)) if transient(&e) => continue,
            Ok(Err(e)) => {
                if shared.verbose {
                    eprintln!("tprox-relay: udp {client}: receiving from the destination: {e}");
                }
                continue;
            }
        };
        last.store(shared.now(), Ordering::Relaxed);
        let _ = send(&shared.listener, &buf[..len], Some(client));
    }
}

/// Sends a datagram at once, or fails with `WouldBlock` when the socket cannot take it now.
/// Straight to the system, not through tokio's `try_send`, which fails until tokio has seen
/// the socket writable once: a new session's first datagram would be lost.
fn send(socket: &UdpSocket, data: &[u8], to: Option<SocketAddr>) -> io::Result<usize> {
    let socket = socket2::SockRef::from(socket);
    match to {
        Some(to) => socket.send_to(data, &to.into()),
        None => socket.send(data),
    }
}

/// An error a UDP socket reports for an earlier datagram's ICMP answer (port or host
/// unreachable), not for the operation at hand: the socket goes on working.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}
