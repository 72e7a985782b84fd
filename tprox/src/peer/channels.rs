//! `tprox peer channels`: a relay that pairs each inbound peer with an outbound peer of its
//! own, as netcat's successors' channel mode does.
//!
//! Every peer that connects to the listening side (TCP), or every new sender (UDP), gets a
//! partner: a new connection (or a new connected socket) to `--connect`. Bytes go both ways
//! between the two. Over TCP a peer's end of sending is passed on to its partner (a
//! half-close, as a proxy passes it), a reset resets the partner, and the channel ends when
//! both sides are done; an outbound peer that cannot be reached yet is dialled again, with a
//! growing pause, for `--redial`, so that a channel opened before its destination is up still
//! finds it. Over UDP a channel ends once nothing has gone either way for `--idle`; an ICMP
//! error from the destination is told and the next datagram is sent again.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpStream, UdpSocket};

use super::{open_connection, Counts, Ending, PeerOptions, Totals, CHUNK};

/// The first pause before dialling a refused outbound peer again; it doubles up to
/// [`REDIAL_PAUSE_MAX`].
const REDIAL_PAUSE: Duration = Duration::from_millis(50);
const REDIAL_PAUSE_MAX: Duration = Duration::from_secs(1);

/// Where the outbound peers are, as given.
fn target(options: &PeerOptions) -> &str {
    options.to.as_deref().unwrap_or_default()
}

/// One TCP channel: `inbound` paired with a new connection to `--connect`, until both are done.
pub(super) async fn tcp(n: u64, inbound: TcpStream, options: &PeerOptions, totals: &Totals) {
    let started = Instant::now();
    let (peer, counts) = open_connection(&inbound, totals);
    let to = target(options);
    let outbound = match dial(to, options.redial).await {
        Ok(outbound) => outbound,
        Err((tries, e)) => {
            // Nobody to pair with: the inbound peer is told by a reset, as a proxy would.
            reset(&inbound);
            totals.failed.fetch_add(1, Relaxed);
            (totals.tell)(format!(
                "channel {n} ({peer}): no partner, {to} not reached in {tries} tries over {:.1} \
                 s: {e}",
                started.elapsed().as_secs_f64()
            ));
            return;
        }
    };
    let _ = outbound.set_nodelay(true);
    let via = outbound
        .local_addr()
        .map_or_else(|_| "?".into(), |a| a.to_string());
    (totals.tell)(format!("channel {n}: {peer} paired with {to} (from {via})"));
    let end = relay(&inbound, &outbound, &counts).await;
    if matches!(end, Ending::Failed(_)) {
        totals.failed.fetch_add(1, Relaxed);
    }
    (totals.tell)(format!(
        "channel {n} ({peer} <-> {to}): {} B in, {} B back, {:.3} s, {end}",
        counts.received.load(Relaxed),
        counts.sent.load(Relaxed),
        started.elapsed().as_secs_f64()
    ));
}

/// Connects to `to`, dialling again after a failure while `redial` lasts; on giving up, the
/// number of tries and the last error.
async fn dial(to: &str, redial: Duration) -> Result<TcpStream, (u32, io::Error)> {
    let started = Instant::now();
    let mut pause = REDIAL_PAUSE;
    let mut tries = 0;
    loop {
        tries += 1;
        match TcpStream::connect(to).await {
            Ok(stream) => return Ok(stream),
            Err(e) => match redial.checked_sub(started.elapsed()) {
                Some(left) if !left.is_zero() => {
                    tokio::time::sleep(pause.min(left)).await;
                    pause = (pause * 2).min(REDIAL_PAUSE_MAX);
                }
                _ => return Err((tries, e)),
            },
        }
    }
}

/// Bytes both ways until both sides have ended sending; an error on either side resets both.
async fn relay(inbound: &TcpStream, outbound: &TcpStream, counts: &Counts) -> Ending {
    let result = tokio::try_join!(
        pump(inbound, outbound, &counts.received),
        pump(outbound, inbound, &counts.sent)
    );
    match result {
        Ok(_) => Ending::Eof,
        Err(e) => {
            reset(inbound);
            reset(outbound);
            match e.kind() {
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                    Ending::ResetByPeer
                }
                _ => Ending::Failed(e),
            }
        }
    }
}

/// One direction: what `from` sends is written to `to`, and its end of sending passed on.
/// Both sockets are shared with the other direction, hence readiness and `try_` calls.
async fn pump(from: &TcpStream, to: &TcpStream, moved: &AtomicU64) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        from.readable().await?;
        let n = match from.try_read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
        }
        let mut written = 0;
        while written < n {
            to.writable().await?;
            match to.try_write(&buf[written..n]) {
                Ok(more) => written += more,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        moved.fetch_add(n as u64, Relaxed);
    }
}

/// Resets the connection when its last handle closes (SO_LINGER 0).
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// A UDP channel: the inbound sender's partner socket, its counts, and when anything last
/// went either way.
struct Channel {
    outbound: Arc<UdpSocket>,
    counts: Arc<Counts>,
    last: Arc<Mutex<Instant>>,
}

/// UDP channels on one listening socket: each new sender gets a socket of its own connected
/// to `--connect`, and the replies on it go back to that sender alone.
pub(super) async fn udp(socket: Arc<UdpSocket>, options: Arc<PeerOptions>, totals: Arc<Totals>) {
    let to = target(&options).to_string();
    let channels: Arc<Mutex<HashMap<SocketAddr, Channel>>> = Default::default();
    let mut serial = 0u64;
    let mut buf = vec![0u8; super::udp::RECEIVE];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // An ICMP error for a datagram sent back to a sender that has gone.
            Err(_) => continue,
        };
        let known = lock(&channels)
            .get(&from)
            .map(|c| (c.outbound.clone(), c.counts.clone(), c.last.clone()));
        let (outbound, counts, last) = match known {
            Some(channel) => channel,
            None => {
                serial += 1;
                let outbound = match open(&to).await {
                    Ok(outbound) => Arc::new(outbound),
                    Err(e) => {
                        totals.failed.fetch_add(1, Relaxed);
                        (totals.tell)(format!("channel {serial} ({from}): no partner: {e}"));
                        continue;
                    }
                };
                let channel = Channel {
                    outbound,
                    counts: totals.register(),
                    last: Arc::new(Mutex::new(Instant::now())),
                };
                let via = channel
                    .outbound
                    .local_addr()
                    .map_or_else(|_| "?".into(), |a| a.to_string());
                (totals.tell)(format!(
                    "channel {serial}: {from} paired with udp {to} (from {via})"
                ));
                let handles = (
                    channel.outbound.clone(),
                    channel.counts.clone(),
                    channel.last.clone(),
                );
                tokio::spawn(back(
                    serial,
                    from,
                    channel.outbound.clone(),
                    socket.clone(),
                    channels.clone(),
                    options.clone(),
                    totals.clone(),
                ));
                lock(&channels).insert(from, channel);
                handles
            }
        };
        *lock(&last) = Instant::now();
        counts.received.fetch_add(len as u64, Relaxed);
        // A full buffer or an ICMP error drops it, as UDP may; an error is told by `back`.
        let _ = socket2::SockRef::from(&*outbound).send(&buf[..len]);
    }
}

/// A new socket connected to `to` (resolved now, so a name may move between channels).
async fn open(to: &str) -> io::Result<UdpSocket> {
    let addr = tokio::net::lookup_host(to)
        .await?
        .next()
        .ok_or_else(|| io::Error::other(format!("{to} has no address")))?;
    let any: SocketAddr = match addr {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any).await?;
    socket.connect(addr).await?;
    Ok(socket)
}

/// The way back of one UDP channel: what the destination sends on the channel's socket goes
/// to its sender, until nothing has gone either way for `--idle`.
async fn back(
    n: u64,
    sender: SocketAddr,
    outbound: Arc<UdpSocket>,
    listening: Arc<UdpSocket>,
    channels: Arc<Mutex<HashMap<SocketAddr, Channel>>>,
    options: Arc<PeerOptions>,
    totals: Arc<Totals>,
) {
    let started = Instant::now();
    let mut buf = vec![0u8; super::udp::RECEIVE];
    let mut refused = 0u64;
    loop {
        let last = lock(&channels)
            .get(&sender)
            .map_or_else(Instant::now, |c| *lock(&c.last));
        let Some(left) = options.idle.checked_sub(last.elapsed()) else {
            break;
        };
        match tokio::time::timeout(left, outbound.recv(&mut buf)).await {
            // Quiet for now: the deadline is looked at again, since the sender may have spoken.
            Err(_) => continue,
            Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
                if refused == 0 {
                    (totals.tell)(format!(
                        "channel {n} ({sender}): refused by {} (ICMP port unreachable); the next \
                         datagram goes again",
                        target(&options)
                    ));
                }
                refused += 1;
            }
            Ok(Err(_)) => {}
            Ok(Ok(len)) => {
                if let Some(channel) = lock(&channels).get(&sender) {
                    *lock(&channel.last) = Instant::now();
                    if socket2::SockRef::from(&*listening)
                        .send_to(&buf[..len], &sender.into())
                        .is_ok()
                    {
                        channel.counts.sent.fetch_add(len as u64, Relaxed);
                    }
                }
            }
        }
    }
    let Some(channel) = lock(&channels).remove(&sender) else {
        return;
    };
    (totals.tell)(format!(
        "channel {n} ({sender} <-> udp {}): {} B in, {} B back, {:.3} s, nothing for {:.1} s",
        target(&options),
        channel.counts.received.load(Relaxed),
        channel.counts.sent.load(Relaxed),
        started.elapsed().as_secs_f64(),
        options.idle.as_secs_f64()
    ));
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
