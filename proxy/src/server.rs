//! Listening, accepting, dialing, and stopping: everything around the relay of one pair.
//!
//! Each mapping has its own listener, accept loop and connection limit. Nothing a single pair
//! does can end an accept loop (R2, R11); only a stop signal does, and then the open pairs get a
//! grace period to finish before they are closed.

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

use crate::host_port;
use crate::mapping::Mapping;
use crate::relay::{self, Ending, Side, Traffic, Transfer};
use crate::sni;
use crate::via::TunnelError;

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
}

impl Default for Options {
    /// Splice where available, no per-connection log, five seconds of grace.
    fn default() -> Self {
        Options {
            copy: Transfer::Splice,
            log_connections: false,
            verbose: false,
            grace: Duration::from_secs(5),
        }
    }
}

/// A bound listener and its mapping.
pub struct Bound {
    /// What the listener forwards where.
    pub mapping: Mapping,
    /// The bound socket.
    pub listener: std::net::TcpListener,
}

impl Bound {
    /// Where the listener listens.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Binds a mapping's listening socket, so that a port in use is reported before anything else
/// happens. `::` (and `[::]`) listens on IPv6 and IPv4 both.
pub fn bind(mapping: &Mapping) -> io::Result<Bound> {
    let addr = (mapping.bind.as_str(), mapping.local_port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "the bind address has no address")
        })?;
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
    // Accepted sockets inherit TCP_NODELAY from the listener (Linux and the BSDs), which
    // saves a system call per client; `handle` sets it again where that is not so.
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(Bound {
        mapping: mapping.clone(),
        listener: socket.into(),
    })
}

/// Serves every listener until `signal` completes, then stops accepting, lets open pairs go on
/// for the grace period (or until a second signal), and closes what is left with a reset.
pub async fn serve<S>(
    bound: Vec<Bound>,
    options: Options,
    mut signal: impl FnMut() -> S,
) -> io::Result<()>
where
    S: std::future::Future<Output = &'static str>,
{
    let options = Arc::new(options);
    let stop_accepting = CancellationToken::new();
    let close_now = CancellationToken::new();
    let pairs = TaskTracker::new();
    let mut loops = Vec::new();
    for Bound { mapping, listener } in bound {
        let listener = TcpListener::from_std(listener)?;
        let name = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let site = Site {
            mapping: Arc::new(mapping),
            name: name.into(),
            shortage: Arc::default(),
            options: options.clone(),
            close_now: close_now.clone(),
            pairs: pairs.clone(),
        };
        loops.push(tokio::spawn(accept_loop(
            listener,
            site,
            stop_accepting.clone(),
        )));
    }
    let first = signal().await;
    stop_accepting.cancel();
    for accept in loops {
        let _ = accept.await;
    }
    pairs.close();
    if !pairs.is_empty() {
        eprintln!(
            "tprox-relay: {first}: stopped accepting; {} open connection(s) may finish within {} \
             s (signal again to close them now)",
            pairs.len(),
            options.grace.as_secs_f64()
        );
        let finished = tokio::select! {
            finished = timeout(options.grace, pairs.wait()) => finished.is_ok(),
            _ = signal() => false,
        };
        if !finished {
            eprintln!("tprox-relay: closing {} connection(s)", pairs.len());
            close_now.cancel();
            pairs.wait().await;
        }
    }
    Ok(())
}

/// What a pair's task needs from its listener.
#[derive(Clone)]
struct Site {
    mapping: Arc<Mapping>,
    /// The listener's address, as log lines name it.
    name: Arc<str>,
    shortage: Arc<Shortage>,
    options: Arc<Options>,
    close_now: CancellationToken,
    pairs: TaskTracker,
}

/// Backoff while descriptors are short: starts short, doubles to a ceiling, so a shortage
/// (EMFILE, ENFILE) costs no CPU while it lasts and is over soon after it ends.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Whether a listener is short of descriptors. Set when accepting, or dialing for a client just
/// accepted, fails; cleared when a pair is established again. While it is set, the accept loop
/// waits before each accept: otherwise it would take clients only to drop them, or spin on a
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
        if self.0.swap(false, Relaxed) {
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

async fn accept_loop(listener: TcpListener, site: Site, stop: CancellationToken) {
    let slots = Arc::new(Semaphore::new(site.mapping.max_connections));
    let mut backoff = BACKOFF.0;
    let mut full = false;
    loop {
        if slots.available_permits() == 0 && !full {
            full = true;
            eprintln!(
                "tprox-relay: {}: {} connections open, the --max-connections limit; new clients \
                 wait until one closes",
                site.name, site.mapping.max_connections
            );
        }
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = stop.cancelled() => return,
        };
        if site.shortage.active() {
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
        match accepted {
            Ok((client, peer)) => {
                if slots.available_permits() > 0 {
                    full = false;
                }
                let site = site.clone();
                site.pairs.clone().spawn(async move {
                    handle(client, peer, &site).await;
                    drop(permit);
                });
            }
            // Typically EMFILE/ENFILE; anything else (ECONNABORTED) is as passing.
            Err(e) => site.shortage.begin(&site.name, "accept", &e),
        }
    }
}

async fn handle(client: TcpStream, peer: SocketAddr, site: &Site) {
    let started = Instant::now();
    let mapping = &site.mapping;
    let options = &site.options;
    if options.verbose {
        eprintln!("tprox-relay: {peer}: accepted on {mapping}");
    }
    let traffic = Traffic::default();
    let mut dest = (mapping.dest_host.as_str(), mapping.dest_port);
    let mut hello = Vec::new();
    let mut named = String::new();
    let ending = 'pair: {
        if !mapping.sni.is_empty() {
            match sni::read_hello(&client, mapping.stall_timeout).await {
                Err(e) => break 'pair Ending::Failed(Side::Client, e),
                Ok(first) => {
                    hello = first.bytes;
                    let name = first.server_name.unwrap_or_default();
                    match mapping.sni.route(&name) {
                        Some((host, port)) => dest = (host, *port),
                        None if mapping.sni.unknown_closed => {
                            break 'pair Ending::DialFailed(format!(
                                "no route for server name '{name}' (closed: --sni-only)"
                            ))
                        }
                        None => {}
                    }
                    named = format!(" (SNI '{name}')");
                }
            }
        }
        let server = match dial(mapping, dest, &client, peer, &site.shortage, &site.name).await {
            Err(why) => break 'pair Ending::DialFailed(why),
            Ok(server) => server,
        };
        site.shortage.end(&site.name);
        // The ClientHello read to choose the destination goes to it first.
        if let Err(e) = write_early(&server, &hello).await {
            break 'pair Ending::Failed(Side::Server, e);
        }
        traffic.up.store(hello.len() as u64, Relaxed);
        // Small request/response messages must not wait for Nagle or delayed ACKs (R12).
        if !cfg!(any(
            target_os = "linux",
            target_os = "freebsd",
            target_os = "macos"
        )) {
            let _ = client.set_nodelay(true);
        }
        let _ = server.set_nodelay(true);
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
    };
    if options.log_connections || options.verbose {
        eprintln!(
            "tprox-relay: {peer} -> {}{named}: up {} B, down {} B, {:.3} s, {ending}",
            host_port(dest.0, dest.1),
            traffic.up.load(Relaxed),
            traffic.down.load(Relaxed),
            started.elapsed().as_secs_f64(),
        );
    }
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
        let dialed = TcpStream::connect((dest_host, dest_port)).await;
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
                write_early(client, &tunnel.early_data)
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

/// Delivers bytes read before the relay started: the destination's that came with the HTTP
/// proxy's answer, or the client's ClientHello.
async fn write_early(to: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        to.writable().await?;
        match to.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
