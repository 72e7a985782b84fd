//! The load tprox generates itself, and the servers at the far end: plain threads and blocking
//! sockets, the cheapest and steadiest way to drive loopback traffic, so that what is measured
//! is the proxy and not the load generator.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tprox_core::front::Front;

/// Bytes per write in the throughput tests.
const CHUNK: usize = 256 * 1024;
/// Size of a ping-pong message and of a connection test's request and reply.
pub const MESSAGE: usize = 64;
/// Time given to each stream to reach its pace before bytes are counted.
const WARMUP: Duration = Duration::from_millis(300);

/// What a server does with each connection it accepts.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// Reads and counts everything, sends nothing.
    Sink,
    /// Sends back what it reads.
    Echo,
    /// Reads one [`MESSAGE`]-byte request, sends it back and closes, as an HTTP/1.0 server
    /// does. Closing first keeps the TIME_WAIT state on the server's side: were it on the
    /// clients' and the proxies' ephemeral ports, tens of thousands of connections a second
    /// would soon make finding a free port the slowest part of connecting, for every proxy
    /// alike, and hide their differences.
    Reply,
    /// Accepts and holds the connection, reading nothing, until it closes.
    Hold,
}

/// Threads serving connections at once: more than any test keeps open at a time.
const SERVER_THREADS: usize = 24;

/// A server on a free loopback port. Stops on drop.
pub struct Server {
    pub addr: SocketAddr,
    /// Bytes a sink has received, over all its connections.
    pub received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Server {
    pub fn start(behaviour: Behaviour) -> io::Result<Server> {
        let listener = listen()?;
        let addr = listener.local_addr()?;
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (counter, stopping, holding) = (received.clone(), stop.clone(), held.clone());
        match behaviour {
            Behaviour::Hold => {
                thread::Builder::new()
                    .name("bench-hold".into())
                    .spawn(move || {
                        for stream in listener.incoming() {
                            if stopping.load(Relaxed) {
                                break;
                            }
                            match stream {
                                Ok(stream) => holding
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push(stream),
                                // Out of descriptors or the like: do not spin.
                                Err(_) => thread::sleep(Duration::from_millis(5)),
                            }
                        }
                    })?;
            }
            // A pool of threads that each accept and serve one connection at a time: starting
            // a thread per connection would cost more than some proxies do, and the
            // connection-rate figures would measure thread creation.
            Behaviour::Sink | Behaviour::Echo | Behaviour::Reply => {
                let listener = Arc::new(listener);
                for _ in 0..SERVER_THREADS {
                    let (listener, counter, stopping) =
                        (listener.clone(), counter.clone(), stopping.clone());
                    thread::Builder::new()
                        .name("bench-server".into())
                        .stack_size(256 * 1024)
                        .spawn(move || {
                            while !stopping.load(Relaxed) {
                                match listener.accept() {
                                    Ok((stream, _)) => {
                                        let _ = stream.set_nodelay(true);
                                        match behaviour {
                                            Behaviour::Sink => sink(stream, &counter),
                                            Behaviour::Reply => reply(stream),
                                            _ => echo(stream),
                                        }
                                    }
                                    Err(_) => thread::sleep(Duration::from_millis(5)),
                                }
                            }
                        })?;
                }
            }
        }
        Ok(Server {
            addr,
            received,
            stop,
            held,
        })
    }

    /// Connections a holding server holds now.
    pub fn holding(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clear();
        // Wake every accepting thread so it sees the flag; each connection ends at once.
        for _ in 0..=SERVER_THREADS {
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        }
    }
}

/// A loopback listener with a long backlog: the proxies dial in bursts, and a dropped SYN
/// costs a second of retransmission.
fn listen() -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

fn sink(mut stream: TcpStream, counter: &AtomicU64) {
    let mut buf = vec![0u8; CHUNK];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        counter.fetch_add(n as u64, Relaxed);
    }
}

fn echo(mut stream: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || stream.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

fn reply(mut stream: TcpStream) {
    let mut request = [0u8; MESSAGE];
    if stream.read_exact(&mut request).is_ok() {
        let _ = stream.write_all(&request);
    }
}

/// How a client reaches the server through the proxy under test: a connect to `addr`, and for
/// a SOCKS5 or HTTP CONNECT front, its handshake naming the server (without credentials: the
/// bench configures fronts without them).
#[derive(Debug, Clone)]
pub struct Dial {
    pub addr: SocketAddr,
    pub front: Option<(Front, SocketAddr)>,
}

/// Longest wait for a front's answer to the handshake.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(5);

thread_local! {
    /// Each load thread's own runtime for fronts' handshakes, made at its first handshake:
    /// the handshake is the one the cases speak ([`Front::handshake`]), which is async, while
    /// the load is plain blocking sockets.
    static HANDSHAKER: RefCell<Option<tokio::runtime::Runtime>> = const { RefCell::new(None) };
}

impl Dial {
    /// Straight to `addr`, no handshake.
    pub fn direct(addr: SocketAddr) -> Dial {
        Dial { addr, front: None }
    }

    /// A blocking connection to the server, the front's handshake done.
    pub fn connect(&self) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(self.addr)?;
        let Some((front, dest)) = &self.front else {
            return Ok(stream);
        };
        stream.set_nonblocking(true)?;
        let stream = on_handshaker(|runtime| {
            runtime.block_on(async {
                let mut stream = tokio::net::TcpStream::from_std(stream)?;
                match tokio::time::timeout(HANDSHAKE_LIMIT, front.handshake(&mut stream, *dest))
                    .await
                {
                    Ok(Ok(())) => stream.into_std(),
                    Ok(Err(refused)) => Err(io::Error::other(format!(
                        "the {} front did not open the tunnel: {refused}",
                        front.kind()
                    ))),
                    Err(_) => Err(io::Error::other(format!(
                        "the {} front did not answer the handshake within {} s",
                        front.kind(),
                        HANDSHAKE_LIMIT.as_secs()
                    ))),
                }
            })
        })?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    }
}

/// Runs `work` on this thread's handshake runtime, making it first if need be.
fn on_handshaker<T>(work: impl FnOnce(&tokio::runtime::Runtime) -> io::Result<T>) -> io::Result<T> {
    HANDSHAKER.with(|slot| {
        let mut slot = slot.borrow_mut();
        match &*slot {
            Some(runtime) => work(runtime),
            None => {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                work(slot.insert(runtime))
            }
        }
    })
}

/// Bytes per second through `dial` to `sink` with `streams` connections writing at once, over
/// `duration` (after a warm-up).
pub fn throughput(
    dial: &Dial,
    sink: &Server,
    streams: usize,
    duration: Duration,
) -> io::Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..streams {
        let mut stream = dial.connect()?;
        let stop = stop.clone();
        writers.push(thread::spawn(move || {
            let chunk = vec![0x5au8; CHUNK];
            while !stop.load(Relaxed) {
                if stream.write_all(&chunk).is_err() {
                    return false;
                }
            }
            let _ = stream.shutdown(Shutdown::Both);
            true
        }));
    }
    thread::sleep(WARMUP);
    let (start, before) = (Instant::now(), sink.received.load(Relaxed));
    thread::sleep(duration);
    let (elapsed, after) = (start.elapsed(), sink.received.load(Relaxed));
    stop.store(true, Relaxed);
    let mut all_ok = true;
    for writer in writers {
        all_ok &= writer.join().unwrap_or(false);
    }
    if !all_ok {
        return Err(io::Error::other("a stream broke off while writing"));
    }
    Ok((after - before) as f64 / elapsed.as_secs_f64())
}

/// Round trips of a [`MESSAGE`]-byte message through `dial` to an echo server, one after the
/// other on one connection, for `duration`: every round trip's time.
pub fn ping_pong(dial: &Dial, duration: Duration) -> io::Result<Vec<Duration>> {
    let mut stream = dial.connect()?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let message = [0x42u8; MESSAGE];
    let mut reply = [0u8; MESSAGE];
    let mut times = Vec::with_capacity(100_000);
    let warm_until = Instant::now() + WARMUP;
    let end = warm_until + duration;
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        stream.write_all(&message)?;
        stream.read_exact(&mut reply)?;
        if sent >= warm_until {
            times.push(sent.elapsed());
        }
    }
    Ok(times)
}

/// Complete connections per second through `dial` to a [`Behaviour::Reply`] server: connect
/// (a front's handshake included: it is part of what a connection costs), send a
/// [`MESSAGE`]-byte request, read the reply and the close; `workers` at once, for `duration`.
/// Returns the rate in the measurement window and every connection completed, the warm-up's
/// included, for a cost per connection measured over the whole run.
pub fn connection_rate(dial: &Dial, workers: usize, duration: Duration) -> io::Result<(f64, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
            let dial = dial.clone();
            thread::spawn(move || {
                while !stop.load(Relaxed) {
                    match one_connection(&dial) {
                        Ok(()) => done.fetch_add(1, Relaxed),
                        Err(_) => failed.fetch_add(1, Relaxed),
                    };
                }
            })
        })
        .collect();
    thread::sleep(WARMUP);
    let (start, before, failed_before) = (Instant::now(), done.load(Relaxed), failed.load(Relaxed));
    thread::sleep(duration);
    let (elapsed, completed) = (start.elapsed(), done.load(Relaxed) - before);
    stop.store(true, Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    // Attempts that were under way when the window closed count too: a connection that hangs
    // must not pass for a quiet moment.
    let failures = failed.load(Relaxed) - failed_before;
    if completed == 0 || failures * 100 > completed {
        return Err(io::Error::other(format!(
            "{completed} connections completed and {failures} failed or hung (5 s) in the \
             measurement window"
        )));
    }
    Ok((completed as f64 / elapsed.as_secs_f64(), done.load(Relaxed)))
}

/// One complete connection: connect, request, reply, the server's close.
pub(super) fn one_connection(dial: &Dial) -> io::Result<()> {
    let mut stream = dial.connect()?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(&[0x17u8; MESSAGE])?;
    let mut reply = [0u8; MESSAGE + 1];
    stream.read_exact(&mut reply[..MESSAGE])?;
    match stream.read(&mut reply)? {
        0 => Ok(()),
        _ => Err(io::Error::other("more than the reply came back")),
    }
}

/// Opens `count` connections through `dial` to a holding server and keeps them; returns them
/// once the server holds them all (or `limit` has passed).
pub fn open_idle(
    dial: &Dial,
    server: &Server,
    count: usize,
    limit: Duration,
) -> io::Result<Vec<TcpStream>> {
    // In batches, each let through before the next: a burst of thousands would overflow the
    // proxy's and the server's backlogs, and measure SYN retransmission instead.
    const BATCH: usize = 500;
    let start = Instant::now();
    let base = server.holding();
    let mut streams = Vec::with_capacity(count);
    while streams.len() < count {
        for _ in 0..BATCH.min(count - streams.len()) {
            streams.push(dial.connect()?);
        }
        while server.holding() - base < streams.len() {
            if start.elapsed() > limit {
                return Err(io::Error::other(format!(
                    "only {} of {} connections reached the server within {} s",
                    server.holding() - base,
                    streams.len(),
                    limit.as_secs()
                )));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(streams)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_behaves_as_documented() {
        let replier = Server::start(Behaviour::Reply).unwrap();
        one_connection(&Dial::direct(replier.addr)).expect("request, reply, close");
        let echo = Server::start(Behaviour::Echo).unwrap();
        assert!(
            !ping_pong(&Dial::direct(echo.addr), Duration::from_millis(50))
                .unwrap()
                .is_empty()
        );
        let sink = Server::start(Behaviour::Sink).unwrap();
        assert!(
            throughput(
                &Dial::direct(sink.addr),
                &sink,
                1,
                Duration::from_millis(50)
            )
            .unwrap()
                > 0.0
        );
    }
}
