//! `tprox peer --udp`: the peer's roles over datagrams.
//!
//! A listening peer answers every sender on its sockets, each sender counted as a
//! "connection" of its own: echo sends each datagram back, sink discards it, greet sends the
//! greeting to a new sender before echoing, source sends `--bytes` to a new sender, hub sends
//! it to every other sender seen. A
//! connecting peer has nobody to hear from until it has spoken, so it speaks first: source
//! sends `--bytes`, greet its greeting, echo and sink one empty datagram that opens their
//! session on a forwarder; it ends once nothing has arrived for `--idle`. UDP has no
//! connection to refuse or reset: those roles are for TCP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::{join_all, Counts, Mode, PeerOptions, Place, Totals};

/// The largest datagram a source sends: what fits an Ethernet frame with room for tunnels.
const DATAGRAM: usize = 1_200;
/// A receive buffer for the largest IPv4 UDP payload.
pub(super) const RECEIVE: usize = 65_536;

/// Runs a UDP peer: until stopped (listening), or until every socket has been idle for
/// `--idle` (connecting).
pub(super) async fn run(options: Arc<PeerOptions>, totals: Arc<Totals>) -> Result<(), String> {
    match &options.place {
        Place::Listen(addrs) => {
            let mut tasks = Vec::new();
            for addr in addrs {
                let socket = UdpSocket::bind(addr)
                    .await
                    .map_err(|e| format!("cannot bind UDP {addr}: {e}"))?;
                (totals.tell)(format!(
                    "{} listening on udp {addr}",
                    format!("{:?}", options.mode).to_lowercase()
                ));
                let (options, totals) = (options.clone(), totals.clone());
                let socket = Arc::new(socket);
                tasks.push(match options.mode {
                    Mode::Channels => tokio::spawn(super::channels::udp(socket, options, totals)),
                    _ => tokio::spawn(listen(socket, options, totals)),
                });
            }
            join_all(tasks).await;
            Ok(())
        }
        Place::Connect(target, count) => {
            let addr = tokio::net::lookup_host(target.as_str())
                .await
                .ok()
                .and_then(|mut addrs| addrs.next())
                .ok_or_else(|| format!("cannot resolve {target}"))?;
            let mut tasks = Vec::new();
            for n in 1..=*count {
                let any: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = UdpSocket::bind(any)
                    .await
                    .map_err(|e| format!("cannot make a UDP socket: {e}"))?;
                socket
                    .connect(addr)
                    .await
                    .map_err(|e| format!("cannot address {target}: {e}"))?;
                let (options, totals) = (options.clone(), totals.clone());
                tasks.push(tokio::spawn(async move {
                    connect(n as u64, socket, &options, &totals).await
                }));
            }
            join_all(tasks).await;
            Ok(())
        }
    }
}

/// One sender of a listening peer.
struct Sender {
    counts: Arc<Counts>,
    /// Reading stopped (`--stop-reading-after`) or ended (`--close-after`) for this sender.
    done: bool,
}

async fn listen(socket: Arc<UdpSocket>, options: Arc<PeerOptions>, totals: Arc<Totals>) {
    let mut senders: HashMap<SocketAddr, Sender> = HashMap::new();
    let mut buf = vec![0u8; RECEIVE];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // An ICMP error for a datagram sent to a sender that has gone.
            Err(_) => continue,
        };
        let n = senders.len() as u64 + 1;
        let sender = senders.entry(from).or_insert_with(|| {
            let counts = totals.register();
            (totals.tell)(format!("sender {n} ({from}): first datagram"));
            let first = Sender {
                counts: counts.clone(),
                done: false,
            };
            match options.mode {
                Mode::Greet => {
                    let greeting = options.greeting.as_bytes();
                    if send(&socket, greeting, Some(from)) {
                        counts.sent.fetch_add(greeting.len() as u64, Relaxed);
                    }
                }
                Mode::Source => {
                    let (socket, options) = (socket.clone(), options.clone());
                    tokio::spawn(async move {
                        stream_out(&socket, Some(from), &options, &counts).await;
                    });
                }
                _ => {}
            }
            first
        });
        if sender.done {
            continue;
        }
        let received = sender.counts.received.fetch_add(len as u64, Relaxed) + len as u64;
        if matches!(options.mode, Mode::Echo | Mode::Greet)
            && send(&socket, &buf[..len], Some(from))
        {
            sender.counts.sent.fetch_add(len as u64, Relaxed);
        }
        if let Some(limit) = options.close_after.or(options.stop_reading_after) {
            if received >= limit {
                sender.done = true;
                (totals.tell)(format!(
                    "sender {from}: {received} B received, no more taken from it"
                ));
            }
        }
        if options.mode == Mode::Hub {
            // To every other sender seen: a datagram a buffer cannot take is dropped, as UDP may.
            for (to, other) in senders.iter().filter(|(to, _)| **to != from) {
                if send(&socket, &buf[..len], Some(*to)) {
                    other.counts.sent.fetch_add(len as u64, Relaxed);
                }
            }
        }
    }
}

async fn connect(n: u64, socket: UdpSocket, options: &PeerOptions, totals: &Totals) {
    let started = Instant::now();
    let peer = socket
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let counts = totals.register();
    // Speaking first: nobody behind a forwarder can reach this socket before it has.
    match options.mode {
        Mode::Source => stream_out(&socket, None, options, &counts).await,
        Mode::Greet => {
            if send(&socket, options.greeting.as_bytes(), None) {
                counts
                    .sent
                    .fetch_add(options.greeting.len() as u64, Relaxed);
            }
        }
        _ => {
            let _ = send(&socket, &[], None);
        }
    }
    let mut buf = vec![0u8; RECEIVE];
    let ending = loop {
        match tokio::time::timeout(options.idle, socket.recv(&mut buf)).await {
            Err(_) => break format!("nothing for {:.1} s", options.idle.as_secs_f64()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                break "refused (ICMP port unreachable)".to_string();
            }
            Ok(Err(e)) => break format!("failed: {e}"),
            Ok(Ok(len)) => {
                let received = counts.received.fetch_add(len as u64, Relaxed) + len as u64;
                if matches!(options.mode, Mode::Echo | Mode::Greet)
                    && send(&socket, &buf[..len], None)
                {
                    counts.sent.fetch_add(len as u64, Relaxed);
                }
                if options.close_after.is_some_and(|limit| received >= limit) {
                    break format!("closed after {received} B received (--close-after)");
                }
                if options
                    .stop_reading_after
                    .is_some_and(|limit| received >= limit)
                {
                    // Held open, unread, as a TCP peer holds its connection.
                    std::future::pending::<()>().await;
                }
            }
        }
    };
    (totals.tell)(format!(
        "socket {n} ({peer}): {} B received, {} B sent, {:.3} s, {ending}",
        counts.received.load(Relaxed),
        counts.sent.load(Relaxed),
        started.elapsed().as_secs_f64()
    ));
}

/// Sends `--bytes` in datagrams of at most [`DATAGRAM`] bytes, at `--rate` if given.
async fn stream_out(
    socket: &UdpSocket,
    to: Option<SocketAddr>,
    options: &PeerOptions,
    counts: &Counts,
) {
    let mut left = options.bytes;
    let started = Instant::now();
    let mut sent_total = 0u64;
    let mut datagram = vec![options.fixed.unwrap_or(0); DATAGRAM];
    while left > 0 {
        let len = left.min(DATAGRAM as u64) as usize;
        if options.fixed.is_none() {
            fastrand::fill(&mut datagram[..len]);
        }
        // A full send buffer: wait until the socket can take it, rather than drop.
        let sent = match to {
            Some(to) => socket.send_to(&datagram[..len], to).await,
            None => socket.send(&datagram[..len]).await,
        };
        if sent.is_err() {
            break;
        }
        left -= len as u64;
        sent_total += len as u64;
        counts.sent.fetch_add(len as u64, Relaxed);
        if let Some(rate) = options.rate {
            let due = Duration::from_secs_f64(sent_total as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Sends one datagram now; whether it went (a full buffer or an ICMP error drops it, as UDP
/// may).
fn send(socket: &UdpSocket, data: &[u8], to: Option<SocketAddr>) -> bool {
    let socket = socket2::SockRef::from(socket);
    match to {
        Some(to) => socket.send_to(data, &to.into()).is_ok(),
        None => socket.send(data).is_ok(),
    }
}
