//! Choosing the port a proxy listens on.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Mutex;

/// A port handed out for one listener (a proxy's, or a destination's), reserved against
/// every other tprox process on this machine for as long as the lease lives.
///
/// Checking that a port is free and then binding it leaves a gap in which another run can pick
/// the same port: two suites side by side then start their proxies on one port, one of them
/// fails to bind, and its readiness probe reaches the other suite's proxy. Each tprox therefore
/// first binds an abstract Unix socket named after the port (`@tprox-port-PORT`): only one
/// process can hold that name, the kernel frees it when the lease is dropped or the process
/// dies, it leaves nothing in the filesystem, and like the port it belongs to the network
/// namespace.
#[derive(Debug)]
pub(crate) struct PortLease {
    port: u16,
    /// The socket holding the name; `None` where abstract sockets are not to be had, and the
    /// run relies on the bind checks alone.
    _claim: Option<std::os::unix::net::UnixListener>,
}

impl PortLease {
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

/// Picks a free loopback port for a listener, one this run has not handed out before and no
/// other tprox process holds.
///
/// Ports come from outside the kernel's ephemeral range: every outgoing connection and every
/// bind to port 0 (tprox's own clients and destinations, and the proxies' connections) takes its
/// port from that range, so a port chosen there could be taken between choosing it and the
/// proxy binding it.
pub(crate) fn free_port() -> PortLease {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let (low, high) = ephemeral_range();
    loop {
        let port = fastrand::u16(1024..=u16::MAX);
        if (low..=high).contains(&port) {
            continue;
        }
        let Some(claim) = claim(port) else {
            continue; // another tprox holds it
        };
        if port_taken(port) {
            continue;
        }
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return PortLease {
                port,
                _claim: claim,
            };
        }
    }
}

/// Claims `port` for this process: `Some(Some(socket))` when it now holds the name, `None`
/// when another process does, `Some(None)` when no claim can be made here at all.
fn claim(port: u16) -> Option<Option<std::os::unix::net::UnixListener>> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener};
    let Ok(name) = SocketAddr::from_abstract_name(format!("tprox-port-{port}")) else {
        return Some(None);
    };
    match UnixListener::bind_addr(&name) {
        Ok(socket) => Some(Some(socket)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => None,
        Err(_) => Some(None),
    }
}

/// The kernel's ephemeral port range (Linux); the usual default where it cannot be read.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// Whether something on this machine holds `port` on loopback. Uses a plain bind, without
/// SO_REUSEADDR, so that connections using the port count too.
pub(super) fn port_taken(port: u16) -> bool {
    use socket2::{Domain, Socket, Type};
    // UDP too: the same number serves a UDP run's listener and destination.
    [Type::STREAM, Type::DGRAM].into_iter().any(|kind| {
        let Ok(socket) = Socket::new(Domain::IPV4, kind, None) else {
            return true;
        };
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())
            .is_err()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_ports_avoid_the_ephemeral_range_and_never_repeat() {
        let (low, high) = ephemeral_range();
        let leases: Vec<PortLease> = (0..200).map(|_| free_port()).collect();
        let ports: HashSet<u16> = leases.iter().map(PortLease::port).collect();
        assert_eq!(ports.len(), 200);
        assert!(ports
            .iter()
            .all(|p| !(low..=high).contains(p) && *p >= 1024));
    }
}

#[cfg(test)]
mod lease_tests {
    use super::*;

    /// What a second tprox process sees: the name is per socket, so a second bind in this
    /// process stands in for another process.
    #[test]
    fn a_leased_port_cannot_be_reserved_again_until_the_lease_ends() {
        let lease = free_port();
        assert!(lease._claim.is_some(), "Linux has abstract sockets");
        assert!(claim(lease.port()).is_none(), "claimed twice");
        let port = lease.port();
        drop(lease);
        assert!(matches!(claim(port), Some(Some(_))), "not released");
    }
}
