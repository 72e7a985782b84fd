//! Listening, accepting, dialing, and stopping: everything around the relay of one pair.
//!
//! The proxy shares nothing between cores: it runs one single-threaded event loop per thread
//! (`Options::threads`), and each loop has a listener of its own for every mapping, all bound to
//! the same port with `SO_REUSEPORT`, so the kernel spreads new clients over the loops and a
//! connection is accepted, dialed and relayed on one thread with no cross-thread wake-up. What
//! must be shared is shared per mapping and touched only at the edges of a connection's life:
//! the connection limit (one semaphore across all loops), the descriptor-shortage flag, and the
//! set of open pairs that a graceful stop waits for.
//!
//! A loop is a tokio runtime, or, on Linux, when every mapping it serves is plain forwarding
//! to an address, the proxy's own epoll loop (`plain`), which makes fewer system calls per
//! connection because it owns each socket's registration ([`EventLoop`]). Both follow the same
//! rules and share the same limit, flag, set and stop.
//!
//! Nothing a single pair does can end an accept loop (R2, R11); only a stop signal does, and then
//! the open pairs get a grace period to finish before they are closed.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{sleep, timeout, Duration};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::front::{self, Front};
use crate::host_port;
use crate::mapping::Mapping;
use crate::relay::{self, Ending, Side, Traffic, Transfer};
use crate::sni;
use crate::via::TunnelError;

mod pin;
#[cfg(target_os = "linux")]
mod plain;

/// Settings that apply to the whole process.
#[derive(Debug, Clone)]
pub struct Options {
    /// How bytes are moved.
    pub copy: Transfer,
    /// One accounting line per pair when it ends.
    pub log_connections: bool,
    /// Every event, including each accept and dial.
    pub verbose: bool,
    /// How long open pairs may go on after a stop signal.
    pub grace: Duration,
    /// Event loops, one thread each. One loop per core keeps every connection on one core;
    /// fewer leave cores to the peers on a shared machine.
    pub threads: usize,
    /// Which event loop serves plain forwarding.
    pub event_loop: EventLoop,
    /// Each loop runs on a CPU of its own and takes the clients whose handshake arrived on
    /// that CPU ([`pin`]).
    pub pin_cpus: bool,
}

/// Which event loop serves a thread's mappings when every one of them is plain forwarding (to
/// an address, with no front, server names, PROXY protocol or HTTP proxy): any other mapping is
/// served by tokio's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventLoop {
    /// The proxy's own epoll loop, on Linux: about four system calls fewer per connection than
    /// tokio's (elsewhere, tokio's).
    Epoll,
    /// tokio's, for everything.
    Tokio,
}

impl Default for Options {
    /// Splice where available, no per-connection log, five seconds of grace, a loop per core.
    fn default() -> Self {
        Options {
            copy: Transfer::Splice,
            log_connections: false,
            verbose: false,
            grace: Duration::from_secs(5),
            threads: cores(),
            event_loop: EventLoop::Epoll,
            pin_cpus: false,
        }
    }
}

pub(crate) use pin::cpus_for as cpus_to_pin;

/// The cores this process may run on (one when the system cannot say).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A mapping's bound listeners: one per event loop, all on the same address.
pub struct Bound {
    /// What the listeners forward where.
    pub mapping: Mapping,
    /// The bound sockets, one per loop.
    pub listeners: Vec<std::net::TcpListener>,
}

impl Bound {
    /// Where the listeners listen.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listeners[0].local_addr()
    }
}

/// Binds a mapping's listening sockets, one for each of `loops` event loops, so that a port in
/// use is reported before anything else happens. `::` (and `[::]`) listens on IPv6 and IPv4 both.
///
/// More than one loop shares the port with `SO_REUSEPORT`. That option would also let another
/// process of the same user share it unnoticed (a second proxy started on the same port), so the
/// port is first taken by a plain socket, which fails if anyone holds it, and which also picks
/// the free port when port 0 is asked for.
pub fn bind(mapping: &Mapping, loops: usize) -> io::Result<Bound> {
    let mut addr = (mapping.bind.as_str(), mapping.local_port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "the bind address has no address")
        })?;
    let loops = loops.max(1);
    if loops > 1 {
        let probe = listening_socket(addr, false)?;
        addr = probe.local_addr()?.as_socket().unwrap_or(addr);
    }
    let listeners = (0..loops)
        .map(|_| {
            let socket = listening_socket(addr, loops > 1)?;
            socket.listen(1024)?;
            Ok(socket.into())
        })
        .collect::<io::Result<_>>()?;
    Ok(Bound {
        mapping: mapping.clone(),
        listeners,
    })
}

/// A nonblocking socket bound to `addr`, not yet listening.
fn listening_socket(addr: SocketAddr, shared: bool) -> io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        socket.set_only_v6(false)?;
    }
    // A restarted proxy must be able to listen again at once, whatever TIME_WAIT says.
    socket.set_reuse_address(true)?;
    if shared {
        socket.set_reuse_port(true)?;
    }
    // Accepted sockets inherit TCP_NODELAY from the listener (Linux and the BSDs), which
    // saves a system call per client; `handle` sets it again where that is not so.
    socket.set_tcp_nodelay(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Serves every listener until `signal` completes, then stops accepting, lets open pairs go on
/// for the grace period (or until a second signal), and closes what is left with a reset:
/// [`start`] and [`Serving::run`] in one.
pub async fn serve<S>(
    bound: Vec<Bound>,
    options: Options,
    signal: impl FnMut() -> S,
) -> io::Result<()>
where
    S: std::future::Future<Output = &'static str>,
{
    start(bound, options).await?.run(signal).await
}

/// Starts the event loops (`options.threads`, as many as each mapping has listeners), each on a
/// thread of its own, and returns once every loop accepts. A loop that cannot start (no thread,
/// no runtime, a listener the system will not register) stops the others and is the error:
/// nothing is accepted before every loop runs, so a flood of clients that takes every
/// descriptor cannot keep the last loop from starting.
pub async fn start(bound: Vec<Bound>, options: Options) -> io::Result<Serving> {
    let options = Arc::new(options);
    let stop = Stop::default();
    let pairs = TaskTracker::new();
    let mut addrs = Vec::new();
    let loops = bound.iter().map(|b| b.listeners.len()).max().unwrap_or(0);
    let mut per_loop: Vec<Vec<(std::net::TcpListener, Site)>> =
        (0..loops).map(|_| Vec::new()).collect();
    for Bound { mapping, listeners } in bound {
        let addr = listeners[0].local_addr()?;
        addrs.push(addr);
        let limit = Arc::new(Limit {
            slots: Arc::new(Semaphore::new(mapping.max_connections)),
            full: AtomicBool::new(false),
            shortage: Shortage::default(),
        });
        let site = Site {
            mapping: Arc::new(mapping),
            name: addr.to_string().into(),
            limit,
            options: options.clone(),
            close_now: stop.close_now.clone(),
            pairs: pairs.clone(),
        };
        for (n, listener) in listeners.into_iter().enumerate() {
            per_loop[n].push((listener, site.clone()));
        }
    }
    let mut serving = Serving {
        addrs,
        options,
        stop,
        pairs,
        threads: Vec::new(),
    };
    let cpus = if serving.options.pin_cpus {
        match pin::cpus_for(loops) {
            Ok(cpus) => Some(cpus),
            Err(e) => {
                serving.finish();
                return Err(e);
            }
        }
    } else {
        None
    };
    for (n, sites) in per_loop.into_iter().enumerate() {
        let (ready, started) = tokio::sync::oneshot::channel();
        let cpu = cpus.as_ref().map(|cpus| cpus[n]);
        let stop = serving.stop.clone();
        #[cfg(target_os = "linux")]
        let plain = serving.options.event_loop == EventLoop::Epoll && plain::suits(&sites);
        let spawned = std::thread::Builder::new()
            .name(format!("tprox-relay-{n}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    if let Err(e) = pin::pin(cpu, &sites) {
                        let _ = ready.send(Err(e));
                        return;
                    }
                }
                #[cfg(target_os = "linux")]
                if plain {
                    return plain::event_loop(sites, stop, ready);
                }
                event_loop(sites, stop, ready)
            });
        let started = match spawned {
            Ok(thread) => {
                serving.threads.push(thread);
                started
                    .await
                    .unwrap_or_else(|_| Err(io::Error::other("an event loop ended at start")))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            serving.finish();
            return Err(e);
        }
    }
    serving.stop.go.cancel();
    Ok(serving)
}

/// The running event loops, until [`Serving::run`] stops them.
pub struct Serving {
    /// Where each mapping listens, in the order of the mappings.
    addrs: Vec<SocketAddr>,
    options: Arc<Options>,
    stop: Stop,
    /// Every open pair of every loop, so the stop can wait for them.
    pairs: TaskTracker,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Serving {
    /// Where each mapping listens, in the order of the mappings (the port that port 0 picked).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Serves until `signal` completes, then stops accepting, lets open pairs go on for the
    /// grace period (or until a second signal), and closes what is left with a reset.
    pub async fn run<S>(mut self, mut signal: impl FnMut() -> S) -> io::Result<()>
    where
        S: std::future::Future<Output = &'static str>,
    {
        let first = signal().await;
        self.stop.accepting.cancel();
        self.stop.acceptors.close();
        self.stop.acceptors.wait().await;
        let pairs = self.pairs.clone();
        pairs.close();
        if !pairs.is_empty() {
            eprintln!(
                "tprox-relay: {first}: stopped accepting; {} open connection(s) may finish within \
                 {} s (signal again to close them now)",
                pairs.len(),
                self.options.grace.as_secs_f64()
            );
            let finished = tokio::select! {
                finished = timeout(self.options.grace, pairs.wait()) => finished.is_ok(),
                _ = signal() => false,
            };
            if !finished {
                eprintln!("tprox-relay: closing {} connection(s)", pairs.len());
                self.stop.close_now.cancel();
                pairs.wait().await;
            }
        }
        self.finish();
        Ok(())
    }

    /// Ends every event loop and waits for its thread.
    fn finish(&mut self) {
        self.stop.accepting.cancel();
        self.stop.close_now.cancel();
        self.stop.done.cancel();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// How the control side tells the event loops to start and to stop.
#[derive(Clone, Default)]
struct Stop {
    /// Cancelled once every loop has started: only then do they accept.
    go: CancellationToken,
    /// Cancelled at the first signal: the accept loops end.
    accepting: CancellationToken,
    /// The accept loops of every event loop, so the stop can wait until none accepts.
    acceptors: TaskTracker,
    /// Cancelled when the grace period is over: open pairs are reset.
    close_now: CancellationToken,
    /// Cancelled when no pair is left: the event loops' threads end.
    done: CancellationToken,
}

/// One event loop: a single-threaded runtime that accepts on its own listener of every mapping
/// and relays the pairs it accepted, until told that the proxy is done.
fn event_loop(
    sites: Vec<(std::net::TcpListener, Site)>,
    stop: Stop,
    ready: tokio::sync::oneshot::Sender<io::Result<()>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    runtime.block_on(async {
        let mut listeners = Vec::new();
        for (listener, site) in sites {
            match TcpListener::from_std(listener) {
                Ok(listener) => listeners.push((listener, site)),
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            }
        }
        let _ = ready.send(Ok(()));
        tokio::select! {
            () = stop.go.cancelled() => {}
            () = stop.done.cancelled() => return,
        }
        for (listener, site) in listeners {
            stop.acceptors
                .spawn(accept_loop(listener, site, stop.accepting.clone()));
        }
        // A timer that is always due within a second. Tokio's timer wakes its own loop (an
        // eventfd write, a system call) whenever a new timer is due sooner than any other; with
        // this one standing, a dial's timeout (the stall timeout, 10 s by default) never is, and
        // each connection saves that call, for one wake-up a second of an idle loop.
        let standing = tokio::spawn(async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
            }
        });
        stop.done.cancelled().await;
        standing.abort();
    });
}

/// What a pair's task needs from its listener.
#[derive(Clone)]
struct Site {
    mapping: Arc<Mapping>,
    /// The listener's address, as log lines name it.
    name: Arc<str>,
    /// Shared by the mapping's listeners in every event loop.
    limit: Arc<Limit>,
    options: Arc<Options>,
    close_now: CancellationToken,
    pairs: TaskTracker,
}

/// What limits a mapping's accepting, across all event loops.
struct Limit {
    /// One permit per connection that `--max-connections` allows.
    slots: Arc<Semaphore>,
    /// Whether the limit has been reported since it was last reached, so the log says it once
    /// per episode, not once per loop.
    full: AtomicBool,
    shortage: Shortage,
}

impl Limit {
    /// Says, once when the limit is reached and not once per loop, that clients now wait. The
    /// flag is read before it is written, so that most connections only read the shared line.
    fn slot_taken(&self, name: &str, max: usize) {
        if self.slots.available_permits() == 0 {
            if !self.full.swap(true, Relaxed) {
                eprintln!(
                    "tprox-relay: {name}: {max} connections open, the --max-connections limit; \
                     new clients wait until one closes"
                );
            }
        } else if self.full.load(Relaxed) {
            self.full.store(false, Relaxed);
        }
    }
}

/// Backoff while descriptors are short: starts short, doubles to a ceiling, so a shortage
/// (EMFILE, ENFILE) costs no CPU while it lasts and is over soon after it ends.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Whether a listener is short of descriptors. Set when accepting, or dialing for a client just
/// accepted, fails; cleared when a pair is established again. While it is set, the accept loops
/// wait before each accept: otherwise they would take clients only to drop them, or spin on a
/// listener that stays readable because its backlog is never drained.
#[derive(Default)]
struct Shortage(AtomicBool);

impl Shortage {
    /// Marks the shortage; says so once per episode.
    fn begin(&self, name: &str, what: &str, e: &io::Error) {
        if !self.0.swap(true, Relaxed) {
            eprintln!("tprox-relay: {name}: {what} failed: {e}; backing off until it works again");
        }
    }

    fn end(&self, name: &str) {
        // Read before writing: every established pair passes here, and a store to a line the
        // other loops read would bounce it between cores.
        if self.0.load(Relaxed) && self.0.swap(false, Relaxed) {
            eprintln!("tprox-relay: {name}: accepting again");
        }
    }

    fn active(&self) -> bool {
        self.0.load(Relaxed)
    }
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Accepts clients and starts a pair for each, one at a time.
///
/// A client is accepted first and waits for a connection slot after: each event loop has a
/// listener of its own, and the kernel decides in whose backlog a client waits, so a loop that
/// took a free slot before accepting could wait on an empty listener while the client waits in
/// another's. This way a freed slot goes to a loop that holds a client; each loop holds at most
/// one client beyond the limit, accepted but neither dialed nor read.
async fn accept_loop(listener: TcpListener, site: Site, stop: CancellationToken) {
    let limit = &site.limit;
    let mut backoff = BACKOFF.0;
    loop {
        if limit.shortage.active() {
            tokio::select! {
                () = sleep(backoff) => {}
                () = stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(BACKOFF.1);
        } else {
            backoff = BACKOFF.0;
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let (client, peer) = match accepted {
            Ok(accepted) => accepted,
            // Typically EMFILE/ENFILE; anything else (ECONNABORTED) is as passing.
            Err(e) => {
                limit.shortage.begin(&site.name, "accept", &e);
                continue;
            }
        };
        let permit = match limit.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::select! {
                permit = limit.slots.clone().acquire_owned() => {
                    permit.expect("the semaphore is never closed")
                }
                () = stop.cancelled() => return,
            },
        };
        limit.slot_taken(&site.name, site.mapping.max_connections);
        let site = site.clone();
        site.pairs.clone().spawn(async move {
            handle(client, peer, &site).await;
            drop(permit);
        });
    }
}

async fn handle(client: TcpStream, peer: SocketAddr, site: &Site) {
    // Read the clock only for the accounting line.
    let logged = site.options.log_connections || site.options.verbose;
    let started = logged.then(Instant::now);
    let mapping = &site.mapping;
    let options = &site.options;
    if options.verbose {
        eprintln!("tprox-relay: {peer}: accepted on {mapping}");
    }
    let traffic = Traffic::default();
    // Boxed and freed before the relay: what a pair needs only at its start (the handshake or
    // ClientHello, the dial, the destination's name) must not stay in the task's memory for
    // the pair's whole life; an idle pair keeps only its sockets, its counters and the label.
    let (label, opened) = Box::pin(open(&client, peer, site, &traffic, logged)).await;
    let ending = match opened {
        Err(ending) => ending,
        Ok(server) => {
            // Small request/response messages must not wait for Nagle or delayed ACKs (R12).
            if !cfg!(any(
                target_os = "linux",
                target_os = "freebsd",
                target_os = "macos"
            )) {
                let _ = client.set_nodelay(true);
            }
            // The server's socket has TCP_NODELAY from its dial (`connect_addr`, or
            // `HttpProxy::connect` for a tunnel).
            let relay = relay::relay(
                &client,
                &server,
                mapping.stall_timeout,
                options.copy,
                &traffic,
            );
            tokio::select! {
                ending = relay => ending,
                () = site.close_now.cancelled() => {
                    relay::abort(&client, &server);
                    Ending::Shutdown
                }
            }
        }
    };
    if let Some(started) = started {
        eprintln!(
            "tprox-relay: {peer} -> {label}: up {} B, down {} B, {:.3} s, {ending}",
            traffic.up.load(Relaxed),
            traffic.down.load(Relaxed),
            started.elapsed().as_secs_f64(),
        );
    }
}

/// The start of a pair: a front's handshake or the ClientHello where the mapping needs one,
/// the dial, and what the client sent before the relay delivered to the destination. Returns
/// the destination as the accounting line names it (only when `logged`), and the server's
/// socket or why the pair ended before its relay.
async fn open(
    client: &TcpStream,
    peer: SocketAddr,
    site: &Site,
    traffic: &Traffic,
    logged: bool,
) -> (String, Result<TcpStream, Ending>) {
    let mapping = &site.mapping;
    let mut dest = (mapping.dest_host.as_str(), mapping.dest_port);
    let mut hello = Vec::new();
    let mut named = String::new();
    // A front's client names the destination; the name lives here, `dest` borrows it.
    let mut requested = None;
    // The client and the address it connected to, as a header of the mapping's own names them:
    // the connection's, or those a received header names.
    let mut source = peer;
    // Asked of the socket only for a header that names it: a system call per connection.
    let mut listener = None;
    let opened = 'pair: {
        // A header from the client comes before anything else, a front's handshake included.
        if mapping.accept_proxy {
            match crate::proxy_header::read(client, mapping.stall_timeout).await {
                Err(e) => break 'pair Err(Ending::Handshake(format!("PROXY protocol: {e}"))),
                Ok(received) => {
                    source = received.source.unwrap_or(source);
                    listener = received.destination;
                }
            }
        }
        let server = if let Some(front) = &mapping.front {
            let request = match front::handshake(client, front, mapping.stall_timeout).await {
                Err(refusal) => break 'pair Err(Ending::Handshake(refusal.to_string())),
                Ok(request) => request,
            };
            named = format!(" ({})", front.kind);
            hello = request.early;
            let request = requested.insert((request.host, request.port));
            dest = (request.0.as_str(), request.1);
            match dial_front(front, mapping, dest, client, peer, site).await {
                Err((failure, why)) => {
                    let _ = front::answer(client, front.kind, Err(failure)).await;
                    break 'pair Err(Ending::DialFailed(why));
                }
                Ok(server) => server,
            }
        } else {
            if !mapping.sni.is_empty() {
                match sni::read_hello(client, mapping.stall_timeout).await {
                    Err(e) => break 'pair Err(Ending::Failed(Side::Client, e)),
                    Ok(first) => {
                        hello = first.bytes;
                        let name = first.server_name.unwrap_or_default();
                        match mapping.sni.route(&name) {
                            Some((host, port)) => dest = (host, *port),
                            None if mapping.sni.unknown_closed => {
                                break 'pair Err(Ending::DialFailed(format!(
                                    "no route for server name '{name}' (closed: --sni-only)"
                                )))
                            }
                            None => {}
                        }
                        named = format!(" (SNI '{name}')");
                    }
                }
            }
            let dialed = dial(
                mapping,
                dest,
                client,
                peer,
                &site.limit.shortage,
                &site.name,
            )
            .await;
            match dialed {
                Err(why) => break 'pair Err(Ending::DialFailed(why)),
                Ok(server) => server,
            }
        };
        site.limit.shortage.end(&site.name);
        // The PROXY protocol header goes before any byte of the client's.
        if let Some(send) = mapping.send_proxy {
            let listener = listener.unwrap_or_else(|| client.local_addr().unwrap_or(peer));
            let header = send.header(source, listener);
            if let Err(e) = crate::write_early(&server, &header).await {
                break 'pair Err(Ending::Failed(Side::Server, e));
            }
        }
        // The ClientHello read to choose the destination, or what a front's client sent behind
        // its request, goes to the destination first.
        if !hello.is_empty() {
            if let Err(e) = crate::write_early(&server, &hello).await {
                break 'pair Err(Ending::Failed(Side::Server, e));
            }
        }
        traffic.up.store(hello.len() as u64, Relaxed);
        Ok(server)
    };
    let label = match logged {
        false => String::new(),
        true if mapping.front.is_some() && dest.1 == 0 => format!("(no request){named}"),
        true => format!("{}{named}", host_port(dest.0, dest.1)),
    };
    (label, opened)
}

/// Opens the server side of a pair: directly, or through the mapping's HTTP proxy. The dial is
/// started as soon as the client is accepted, so a destination that speaks first is heard (R8),
/// and it is bounded by the stall timeout, so a client is never left waiting forever.
async fn dial(
    mapping: &Mapping,
    (dest_host, dest_port): (&str, u16),
    client: &TcpStream,
    peer: SocketAddr,
    shortage: &Shortage,
    name: &str,
) -> Result<TcpStream, String> {
    let direct = || async {
        let dialed = connect(dest_host, dest_port).await;
        if let Err(e) = &dialed {
            if out_of_descriptors(e) {
                shortage.begin(name, "dialing", e);
            }
        }
        dialed
    };
    let Some(via) = &mapping.via else {
        return match timeout(mapping.stall_timeout, direct()).await {
            Ok(Ok(server)) => Ok(server),
            Ok(Err(e)) => Err(format!("dial failed: {e}")),
            Err(_) => Err("dial failed: no answer within the stall timeout".into()),
        };
    };
    let tunnel = timeout(mapping.stall_timeout, via.connect(dest_host, dest_port))
        .await
        .unwrap_or_else(|_| {
            Err(TunnelError::Protocol(
                "no answer to CONNECT within the stall timeout".into(),
            ))
        });
    match tunnel {
        Ok(tunnel) => {
            if !tunnel.early_data.is_empty() {
                crate::write_early(client, &tunnel.early_data)
                    .await
                    .map_err(|e| format!("client failed: {e}"))?;
            }
            Ok(tunnel.stream)
        }
        Err(TunnelError::Unreachable(e)) if out_of_descriptors(&e) => {
            shortage.begin(name, "dialing", &e);
            Err(format!("dial failed: {e}"))
        }
        Err(TunnelError::Unreachable(e)) if mapping.direct_fallback => {
            eprintln!(
                "tprox-relay: {peer}: HTTP proxy {via} unreachable ({e}); dialing {} directly",
                host_port(dest_host, dest_port)
            );
            match timeout(mapping.stall_timeout, direct()).await {
                Ok(Ok(server)) => Ok(server),
                Ok(Err(e)) => Err(format!("dial failed (direct fallback): {e}")),
                Err(_) => Err("dial failed (direct fallback): no answer in time".into()),
            }
        }
        Err(e) => {
            // Said even without -d: a refusing or missing HTTP proxy is a configuration problem
            // the operator must hear about.
            eprintln!(
                "tprox-relay: {peer}: CONNECT {} via {via}: {e}",
                host_port(dest_host, dest_port)
            );
            Err(e.to_string())
        }
    }
}

/// Connects to `host:port` as tokio's `TcpStream::connect` does (each address in turn, the last
/// error when none answers), through [`connect_addr`].
async fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        match connect_addr(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the name resolves to no address",
        )
    }))
}

/// Connects to `addr` with two system calls fewer than tokio's connect makes per connection:
/// TCP_NODELAY is set on the socket it is created as (small messages must not wait for Nagle,
/// R12), and the connect's outcome is read from the readiness that ends the wait, where tokio
/// asks `getsockopt(SO_ERROR)` after every connect: the socket's error is asked only when the
/// readiness reports one (a refused or reset connect is both an error and closed for writing).
async fn connect_addr(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::from_std(start_connect(addr, Handshake::AckAtOnce)?.into())?;
    let ready = stream
        .ready(tokio::io::Interest::WRITABLE | tokio::io::Interest::ERROR)
        .await?;
    if ready.is_error() || ready.is_write_closed() {
        return Err(stream
            .take_error()?
            .unwrap_or_else(|| io::ErrorKind::ConnectionRefused.into()));
    }
    Ok(stream)
}

/// How a dial ends its handshake.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Handshake {
    /// The kernel acknowledges the destination's SYN-ACK at once, as a connect always does.
    AckAtOnce,
    /// The acknowledgement waits for the first bytes sent (or for the caller to release it,
    /// which the own loop does at the end of the pair's first turn): a client's first bytes
    /// are nearly always there by the time the dial completes, and the acknowledgement then
    /// travels in their segment. On loopback the destination's side of every packet the proxy
    /// sends runs on the proxy's CPU, so a packet fewer per connection is CPU time the proxy
    /// spares. Left unreleased, the kernel would send it after 200 ms (`TCP_DELACK_MAX`), and a
    /// destination that speaks first would not see the connection until then.
    AckWithFirstBytes,
}

/// A non-blocking socket with TCP_NODELAY whose connect to `addr` is under way (or done).
/// Both event loops dial with it.
fn start_connect(addr: SocketAddr, handshake: Handshake) -> io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM.nonblocking().cloexec(),
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    if handshake == Handshake::AckWithFirstBytes {
        // Delayed-acknowledgement ("ping-pong") mode before the connect: the kernel then
        // holds the handshake's last ACK for data to carry it (`tcp_rcv_synsent_state_process`).
        socket.set_tcp_quickack(false)?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket)
}

/// Opens the server side for a front's client and answers the client's request: a
/// destination the allow-list permits, dialed directly or through the mapping's HTTP proxy.
/// On failure, the reply the client is owed and the log's reason.
async fn dial_front(
    front: &Front,
    mapping: &Mapping,
    (host, port): (&str, u16),
    client: &TcpStream,
    peer: SocketAddr,
    site: &Site,
) -> Result<TcpStream, (front::Failure, String)> {
    let request = front::Request {
        host: host.into(),
        port,
        early: Vec::new(),
    };
    let addrs = front
        .resolve(&request)
        .await
        .map_err(|failure| (failure, failure.to_string()))?;
    let server = if mapping.via.is_some() {
        // The HTTP proxy dials by name; the allow-list was checked on this machine's answer.
        dial(
            mapping,
            (host, port),
            client,
            peer,
            &site.limit.shortage,
            &site.name,
        )
        .await
        .map_err(|why| (front::Failure::General, why))?
    } else {
        let mut last = front::Failure::General;
        let mut reason = String::new();
        let mut opened = None;
        for addr in addrs {
            match timeout(mapping.stall_timeout, connect_addr(addr)).await {
                Ok(Ok(server)) => {
                    opened = Some(server);
                    break;
                }
                Ok(Err(e)) => {
                    if out_of_descriptors(&e) {
                        site.limit.shortage.begin(&site.name, "dialing", &e);
                    }
                    last = front::Failure::of(&e);
                    reason = format!("dial {addr} failed: {e}");
                }
                Err(_) => {
                    last = front::Failure::TimedOut;
                    reason = format!("dial {addr} failed: no answer within the stall timeout");
                }
            }
        }
        opened.ok_or((last, reason))?
    };
    let bound = server
        .local_addr()
        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
    front::answer(client, front.kind, Ok(bound))
        .await
        .map_err(|e| (front::Failure::General, format!("client failed: {e}")))?;
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Most bytes the task of one pair may take beside its sockets' registrations, so that an
    /// idle pair stays within 2 KiB of the proxy's memory: what a pair needs only at its start
    /// (the handshake, the ClientHello, the dial, a bulk direction's pipe, a slow peer's timer)
    /// is boxed and freed, and must stay so. The spawned task adds the site and the permit,
    /// and jemalloc rounds the whole up to a size class: measured with `tprox bench --idle`,
    /// 1,008 and 1,000 bytes here gave 1.81 and 1.84 KiB per idle pair, 1,088 bytes (the
    /// fronts' state kept for the pair's life) 2.07 KiB.
    const PAIR_TASK_LIMIT: usize = 1024;

    #[test]
    fn an_idle_pair_keeps_a_small_task() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let client = TcpStream::connect(addr).await.unwrap();
            let mapping = Mapping {
                bind: "127.0.0.1".into(),
                local_port: 0,
                dest_host: "127.0.0.1".into(),
                dest_port: addr.port(),
                via: None,
                direct_fallback: false,
                max_connections: 1,
                stall_timeout: Duration::from_secs(1),
                sni: Default::default(),
                front: None,
                send_proxy: None,
                accept_proxy: false,
                udp: false,
            };
            let site = Site {
                mapping: Arc::new(mapping),
                name: "test".into(),
                limit: Arc::new(Limit {
                    slots: Arc::new(Semaphore::new(1)),
                    full: AtomicBool::new(false),
                    shortage: Shortage::default(),
                }),
                options: Arc::new(Options::default()),
                close_now: CancellationToken::new(),
                pairs: TaskTracker::new(),
            };
            let task = handle(client, addr, &site);
            let size = std::mem::size_of_val(&task);
            assert!(
                size <= PAIR_TASK_LIMIT,
                "a pair's task takes {size} bytes, more than {PAIR_TASK_LIMIT}"
            );
        });
    }
}
