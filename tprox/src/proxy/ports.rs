//! Choosing the port a proxy listens on.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Mutex;

/// Picks a free loopback port for a proxy to listen on, one this run has not handed out before.
///
/// Ports come from outside the kernel's ephemeral range: every outgoing connection and every
/// bind to port 0 (tprox's own clients and destinations, and the proxies' connections) takes its
/// port from that range, so a port chosen there could be taken between choosing it and the
/// proxy binding it.
pub(crate) fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let (low, high) = ephemeral_range();
    loop {
        let port = fastrand::u16(1024..=u16::MAX);
        if (low..=high).contains(&port) || port_taken(port) {
            continue;
        }
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
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
    let Ok(socket) = Socket::new(Domain::IPV4, Type::STREAM, None) else {
        return true;
    };
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_ports_avoid_the_ephemeral_range_and_never_repeat() {
        let (low, high) = ephemeral_range();
        let ports: HashSet<u16> = (0..200).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 200);
        assert!(ports
            .iter()
            .all(|p| !(low..=high).contains(p) && *p >= 1024));
    }
}
