//! `tprox peer`: the client-side and destination-side behaviours of the cases, runnable by hand
//! (netcat-style), so that a proxy can be poked at while it is being debugged.
//!
//! A peer either listens (the destination) or connects (clients, several at once), and does
//! one thing with every connection: echo, sink, source, greet, reset; or, listening, refuse.
//! Modifiers stop reading, close or reset after a number of bytes. Every connection's byte
//! counts are told when it ends, and the totals when the peer stops (the command line prints
//! them).

mod channels;
mod udp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// What a peer does with each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Send back everything received.
    Echo,
    /// Read and discard everything.
    Sink,
    /// Send --bytes bytes (random, or --fixed), at --rate, then shut down sending; read and
    /// discard what comes back.
    Source,
    /// Send --greeting first, then echo.
    Greet,
    /// Listening only: hold the port without accepting, so connections are refused.
    Refuse,
    /// Reset the connection (after --reset-after bytes received, default at once).
    Reset,
    /// Listening only: a relay between the connected peers, whatever one sends going to all
    /// the others (over UDP, to every other sender seen).
    Hub,
    /// Listening, with --connect: each inbound peer paired with an outbound one of its own to
    /// --connect, bytes both ways, a close or reset passed on to the partner (see
    /// `--redial`; over UDP a channel per sender, ended after --idle).
    Channels,
}

/// Where the peer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Listen on these addresses.
    Listen(Vec<SocketAddr>),
    /// Connect to this address this many times at once.
    Connect(String, usize),
}

#[derive(Debug, Clone)]
pub struct PeerOptions {
    pub mode: Mode,
    pub place: Place,
    /// Source: bytes to send.
    pub bytes: u64,
    /// Source: bytes per second; unlimited when unset.
    pub rate: Option<u64>,
    /// Source: send this byte over and over instead of random bytes.
    pub fixed: Option<u8>,
    /// Greet: the greeting.
    pub greeting: String,
    /// Stop reading (but stay connected) after this many bytes received.
    pub stop_reading_after: Option<u64>,
    /// Close the connection after this many bytes received.
    pub close_after: Option<u64>,
    /// Reset the connection after this many bytes received.
    pub reset_after: Option<u64>,
    /// Datagrams instead of connections (`--udp`; see [`udp`]).
    pub udp: bool,
    /// UDP, connecting: the peer ends once nothing has arrived for this long; UDP channels:
    /// a channel ends once nothing has gone either way for this long.
    pub idle: Duration,
    /// Channels: where each inbound peer's partner is, `HOST:PORT`.
    pub to: Option<String>,
    /// Channels: how long an outbound peer that cannot be reached is dialled again, so that
    /// a channel opened before its destination is up still finds it.
    pub redial: Duration,
}

/// Parses `[ADDR:]PORT`: without ADDR, loopback on IPv4 and, where the host has it, IPv6.
pub fn parse_listen(text: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(port) = text.parse::<u16>() {
        let mut addrs = vec![SocketAddr::from(([127, 0, 0, 1], port))];
        if std::net::TcpListener::bind("[::1]:0").is_ok() {
            addrs.push(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)));
        }
        return Ok(addrs);
    }
    text.parse::<SocketAddr>()
        .map(|addr| vec![addr])
        .map_err(|_| {
            format!("'{text}' is not [ADDR:]PORT (for example 9000, 127.0.0.1:9000 or [::1]:9000)")
        })
}

/// Parses `HOST:PORT[xN]`.
pub fn parse_connect(text: &str) -> Result<(String, usize), String> {
    let (target, count) = match text.rsplit_once('x') {
        Some((target, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => {
            let n: usize = n.parse().map_err(|_| format!("'{text}': bad count"))?;
            if !(1..=10_000).contains(&n) {
                return Err(format!("'{text}': the count must be 1-10000"));
            }
            (target, n)
        }
        _ => (text, 1),
    };
    match target.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok((target.to_string(), count))
        }
        _ => Err(format!(
            "'{text}' is not HOST:PORT[xN] (for example 127.0.0.1:8080x10)"
        )),
    }
}

/// The connections of a hub: each member's queue of bytes from the others. Bounded, and
/// awaited: a member that reads slowly slows the hub, rather than lose bytes.
#[derive(Default)]
struct Hub {
    members: std::sync::Mutex<Vec<Member>>,
}

/// A hub member's number, and where the others' bytes for it go.
type Member = (u64, tokio::sync::mpsc::Sender<Arc<[u8]>>);

impl Hub {
    /// Joins member `n`: the bytes the others send come out of the receiver.
    fn join(&self, n: u64) -> tokio::sync::mpsc::Receiver<Arc<[u8]>> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        self.lock().push((n, tx));
        rx
    }

    fn leave(&self, n: u64) {
        self.lock().retain(|(m, _)| *m != n);
    }

    /// Sends `data` from member `n` to every other member.
    async fn broadcast(&self, n: u64, data: &[u8]) {
        let data: Arc<[u8]> = data.into();
        let others: Vec<_> = self
            .lock()
            .iter()
            .filter(|(m, _)| *m != n)
            .map(|(_, tx)| tx.clone())
            .collect();
        for tx in others {
            let _ = tx.send(data.clone()).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One connection's account.
#[derive(Debug, Default)]
struct Counts {
    received: AtomicU64,
    sent: AtomicU64,
}

/// Every connection's counts, for the summary (also those still open when the peer is
/// stopped), and where the peer's lines go: the command line prints them.
pub struct Totals {
    connections: std::sync::Mutex<Vec<Arc<Counts>>>,
    /// Connections that ended in an error (not a reset, which a peer may do on purpose).
    failed: AtomicU64,
    /// Takes each line the peer has to tell: listening, a connection's end, an accept failed.
    tell: Box<dyn Fn(String) + Send + Sync>,
}

impl Totals {
    /// Totals that tell their lines to `tell`.
    pub fn new(tell: impl Fn(String) + Send + Sync + 'static) -> Self {
        Totals {
            connections: Default::default(),
            failed: AtomicU64::new(0),
            tell: Box::new(tell),
        }
    }

    /// The connections, and the bytes received and sent in all.
    pub fn summary(&self) -> String {
        let all = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let sum = |get: fn(&Counts) -> u64| all.iter().map(|c| get(c)).sum::<u64>();
        format!(
            "{} connection(s), {} B received, {} B sent",
            all.len(),
            sum(|c| c.received.load(Relaxed)),
            sum(|c| c.sent.load(Relaxed))
        )
    }

    /// A new connection's counts, counted in the summary from now on.
    fn register(&self) -> Arc<Counts> {
        let counts = Arc::new(Counts::default());
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(counts.clone());
        counts
    }

    /// Whether a connection failed (a write into a closed connection, say).
    pub fn any_failed(&self) -> bool {
        self.failed.load(Relaxed) > 0
    }
}

/// Waits for every task: a peer ends when all its connections (or listeners) have.
async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<T>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// Runs the peer until it is stopped (listening) or until every connection has ended
/// (connecting). An error is a port in use or nothing to connect to.
pub async fn run(options: PeerOptions, totals: Arc<Totals>) -> Result<(), String> {
    serve_all(Arc::new(options), totals).await
}

async fn serve_all(options: Arc<PeerOptions>, totals: Arc<Totals>) -> Result<(), String> {
    if options.udp {
        return udp::run(options, totals).await;
    }
    match &options.place {
        Place::Listen(addrs) => listen(addrs, options.clone(), totals).await,
        Place::Connect(target, count) => {
            let mut tasks = Vec::new();
            for n in 1..=*count {
                let stream = TcpStream::connect(target.as_str())
                    .await
                    .map_err(|e| format!("cannot connect to {target}: {e}"))?;
                let (options, totals) = (options.clone(), totals.clone());
                tasks.push(tokio::spawn(async move {
                    serve(n as u64, stream, &options, &totals).await
                }));
            }
            join_all(tasks).await;
            Ok(())
        }
    }
}

async fn listen(
    addrs: &[SocketAddr],
    options: Arc<PeerOptions>,
    totals: Arc<Totals>,
) -> Result<(), String> {
    let mut listeners = Vec::new();
    for addr in addrs {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| format!("cannot make a socket for {addr}: {e}"))?;
        let _ = socket.set_reuseaddr(true);
        socket
            .bind(*addr)
            .map_err(|e| format!("cannot bind {addr}: {e}"))?;
        if options.mode == Mode::Refuse {
            // Bound but not listening: the port is held, and connecting to it is refused.
            (totals.tell)(format!(
                "holding {addr} without listening: connections are refused"
            ));
            listeners.push(Err(socket));
            continue;
        }
        let listener = socket
            .listen(1024)
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        (totals.tell)(format!(
            "{} listening on {addr}",
            format!("{:?}", options.mode).to_lowercase()
        ));
        listeners.push(Ok(listener));
    }
    let mut accepts = Vec::new();
    let serial = Arc::new(AtomicU64::new(0));
    let hub = Arc::new(Hub::default());
    for listener in listeners {
        let Ok(listener) = listener else {
            accepts.push(tokio::spawn(std::future::pending::<()>()));
            continue;
        };
        let (options, totals, serial) = (options.clone(), totals.clone(), serial.clone());
        accepts.push(tokio::spawn(accept_loop(
            listener,
            options,
            totals,
            serial,
            hub.clone(),
        )));
    }
    for accept in accepts {
        let _ = accept.await;
    }
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    options: Arc<PeerOptions>,
    totals: Arc<Totals>,
    serial: Arc<AtomicU64>,
    hub: Arc<Hub>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let n = serial.fetch_add(1, Relaxed) + 1;
                let (options, totals) = (options.clone(), totals.clone());
                if options.mode == Mode::Hub {
                    let hub = hub.clone();
                    tokio::spawn(async move { hub_member(n, stream, &hub, &totals).await });
                    continue;
                }
                if options.mode == Mode::Channels {
                    tokio::spawn(async move { channels::tcp(n, stream, &options, &totals).await });
                    continue;
                }
                tokio::spawn(async move { serve(n, stream, &options, &totals).await });
            }
            Err(e) => {
                (totals.tell)(format!("accept failed: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// How a connection ended, for its line.
enum Ending {
    Eof,
    ClosedAfter(u64),
    ResetByPeer,
    ResetAfter(u64),
    Failed(std::io::Error),
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Eof => f.write_str("both sides done"),
            Ending::ClosedAfter(n) => write!(f, "closed after {n} B received (--close-after)"),
            Ending::ResetByPeer => f.write_str("reset by the other side"),
            Ending::ResetAfter(n) => write!(f, "reset after {n} B received"),
            Ending::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

/// A new connection's peer, for its lines, and its counts; small writes go out at once.
fn open_connection(stream: &TcpStream, totals: &Totals) -> (String, Arc<Counts>) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let _ = stream.set_nodelay(true);
    (peer, totals.register())
}

async fn serve(n: u64, stream: TcpStream, options: &PeerOptions, totals: &Totals) {
    let started = Instant::now();
    let (peer, counts) = open_connection(&stream, totals);
    let end = converse(stream, options, &counts).await;
    if matches!(end, Ending::Failed(_)) {
        totals.failed.fetch_add(1, Relaxed);
    }
    let (received, sent) = (counts.received.load(Relaxed), counts.sent.load(Relaxed));
    (totals.tell)(format!(
        "connection {n} ({peer}): {received} B received, {sent} B sent, {:.3} s, {end}",
        started.elapsed().as_secs_f64()
    ));
}

/// Bytes read at a time.
const CHUNK: usize = 64 * 1024;

/// One member of a TCP hub: what it sends goes to the others, what they send comes to it,
/// until it closes.
async fn hub_member(n: u64, stream: TcpStream, hub: &Hub, totals: &Totals) {
    let started = Instant::now();
    let (peer, counts) = open_connection(&stream, totals);
    let mut inbox = hub.join(n);
    (totals.tell)(format!("member {n} ({peer}): joined"));
    let (mut reader, mut writer) = stream.into_split();
    let out_counts = counts.clone();
    let deliver = tokio::spawn(async move {
        while let Some(data) = inbox.recv().await {
            if writer.write_all(&data).await.is_err() {
                break;
            }
            out_counts.sent.fetch_add(data.len() as u64, Relaxed);
        }
    });
    let mut buf = vec![0u8; CHUNK];
    let end = loop {
        match reader.read(&mut buf).await {
            Ok(0) => break Ending::Eof,
            Ok(len) => {
                counts.received.fetch_add(len as u64, Relaxed);
                hub.broadcast(n, &buf[..len]).await;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break Ending::ResetByPeer,
            Err(e) => break Ending::Failed(e),
        }
    };
    hub.leave(n);
    deliver.abort();
    (totals.tell)(format!(
        "member {n} ({peer}): {} B received, {} B sent, {:.3} s, {end}",
        counts.received.load(Relaxed),
        counts.sent.load(Relaxed),
        started.elapsed().as_secs_f64()
    ));
}

async fn converse(stream: TcpStream, options: &PeerOptions, counts: &Arc<Counts>) -> Ending {
    let reset_limit = match options.mode {
        Mode::Reset => Some(options.reset_after.unwrap_or(0)),
        _ => options.reset_after,
    };
    if reset_limit == Some(0) {
        return reset(stream, 0);
    }
    let (mut reader, mut writer) = stream.into_split();
    let echo = matches!(options.mode, Mode::Echo | Mode::Greet);
    if options.mode == Mode::Greet {
        if let Err(e) = writer.write_all(options.greeting.as_bytes()).await {
            return Ending::Failed(e);
        }
        counts
            .sent
            .fetch_add(options.greeting.len() as u64, Relaxed);
    }
    // A source writes on its own while the reading goes on here.
    let (mut writer, source) = if options.mode == Mode::Source {
        let options = options.clone();
        let counts = counts.clone();
        let task = tokio::spawn(async move {
            let result = send(&mut writer, &options, &counts.sent).await;
            let _ = writer.shutdown().await;
            result
        });
        (None, Some(task))
    } else {
        (Some(writer), None)
    };
    let mut buf = vec![0u8; CHUNK];
    let end = loop {
        let received = counts.received.load(Relaxed);
        if options
            .stop_reading_after
            .is_some_and(|limit| received >= limit)
        {
            // Stay connected without reading: the other side's writes back up.
            std::future::pending::<()>().await;
        }
        let room = [options.stop_reading_after, options.close_after, reset_limit]
            .into_iter()
            .flatten()
            .map(|limit| limit.saturating_sub(received))
            .min()
            .map_or(CHUNK, |left| (left as usize).clamp(1, CHUNK));
        let n = match reader.read(&mut buf[..room]).await {
            Ok(0) => {
                if let Some(writer) = writer.as_mut() {
                    let _ = writer.shutdown().await;
                }
                break Ending::Eof;
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                ) =>
            {
                break Ending::ResetByPeer
            }
            Err(e) => break Ending::Failed(e),
        };
        let received = counts.received.fetch_add(n as u64, Relaxed) + n as u64;
        if echo {
            if let Some(writer) = writer.as_mut() {
                if let Err(e) = writer.write_all(&buf[..n]).await {
                    break Ending::Failed(e);
                }
                counts.sent.fetch_add(n as u64, Relaxed);
            }
        }
        if reset_limit.is_some_and(|limit| received >= limit) {
            let stream = match writer.take() {
                Some(writer) => reader.reunite(writer).ok(),
                None => None,
            };
            match stream {
                Some(stream) => return reset(stream, received),
                None => break Ending::ResetAfter(received),
            }
        }
        if options.close_after.is_some_and(|limit| received >= limit) {
            break Ending::ClosedAfter(received);
        }
    };
    if let Some(task) = source {
        // Reading is over; the source finishes (or is cut short when the peer is gone).
        if let Ok(Err(e)) = task.await {
            return Ending::Failed(e);
        }
    }
    end
}

/// Closes with a reset: SO_LINGER 0, then close.
fn reset(stream: TcpStream, received: u64) -> Ending {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
    Ending::ResetAfter(received)
}

/// A source's writing: --bytes bytes, paced at --rate.
async fn send(
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
    options: &PeerOptions,
    sent: &AtomicU64,
) -> std::io::Result<()> {
    let mut rng = fastrand::Rng::with_seed(0x7072_6f78);
    let mut chunk = vec![options.fixed.unwrap_or(0); CHUNK];
    let started = Instant::now();
    let mut total = 0u64;
    while total < options.bytes {
        let n = (options.bytes - total).min(match options.rate {
            // Small pieces keep the pace even.
            Some(rate) => (rate / 20).clamp(1, CHUNK as u64),
            None => CHUNK as u64,
        }) as usize;
        if options.fixed.is_none() {
            rng.fill(&mut chunk[..n]);
        }
        writer.write_all(&chunk[..n]).await?;
        total += n as u64;
        sent.fetch_add(n as u64, Relaxed);
        if let Some(rate) = options.rate {
            let due = started + Duration::from_secs_f64(total as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_parse() {
        assert_eq!(
            parse_connect("127.0.0.1:80x10").unwrap(),
            ("127.0.0.1:80".into(), 10)
        );
        assert_eq!(
            parse_connect("localhost:80").unwrap(),
            ("localhost:80".into(), 1)
        );
        assert_eq!(parse_connect("[::1]:80x2").unwrap(), ("[::1]:80".into(), 2));
        assert!(parse_connect("127.0.0.1").is_err());
        assert!(parse_connect("127.0.0.1:80x0").is_err());
        assert_eq!(
            parse_listen("127.0.0.1:9").unwrap(),
            vec![SocketAddr::from(([127, 0, 0, 1], 9))]
        );
        assert_eq!(
            parse_listen("9").unwrap()[0],
            SocketAddr::from(([127, 0, 0, 1], 9))
        );
        assert!(parse_listen("nine").unwrap_err().contains("[ADDR:]PORT"));
    }
}
