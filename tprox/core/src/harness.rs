//! What a case body gets to work with: the proxy's address, the fake destination, the stall
//! timeout, a seeded random source, and a trace of what happened.

use std::fmt::Display;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use crate::front::Front;
use crate::net::read_exact_within;
use crate::outcome::Failure;
use crate::proxy::{free_port, HOST};
use crate::proxy_protocol::{Found, Mode, Version};

/// How long "promptly" may take: the time tprox allows for anything the contract expects to
/// happen at once (an echo, a connect, a close). Generous on purpose: a correct proxy on a busy
/// 2-core machine answers in milliseconds, a broken one never.
pub const PROMPT: Duration = Duration::from_secs(5);

/// Scale settings for the cases that scale. The defaults fit the default open-file limit
/// (1024) of both tprox and the proxy.
#[derive(Debug, Clone)]
pub struct Scale {
    /// Bytes pushed through the bulk chain (the original tester used 2 MiB).
    pub bulk_bytes: usize,
    /// Connections in the long echo and bulk chains (the original used 20).
    pub chain_length: usize,
    /// Connections open at once in concurrency/many.
    pub connections: usize,
}

impl Default for Scale {
    fn default() -> Self {
        Scale {
            bulk_bytes: 2 * 1024 * 1024,
            chain_length: 20,
            connections: 200,
        }
    }
}

/// The fake destination server: a listener on a fixed loopback port that a case can close (so
/// that connecting to it is refused) and open again.
pub struct Destination {
    port: u16,
    /// Keeps the port reserved for this run while it is closed and reopened.
    _lease: crate::proxy::PortLease,
    listener: RwLock<Option<Arc<TcpListener>>>,
    /// In a run where the proxy sends the PROXY protocol (`--proxy-protocol send:VERSION`):
    /// its version. Every accepted connection's header is then read off first, so that each
    /// case runs on the stream as it would without one (the mirror, on the destination's
    /// side, of a front's handshake on the client's).
    headers: Option<Version>,
    /// In a run where the proxy accepts the PROXY protocol (`accept:VERSION`): its version.
    /// Every client tprox connects sends a header of it first ([`connect_client`]).
    client_headers: Option<Version>,
    /// Set when the proxy was seen at its start to pass its clients' headers on to the
    /// destination: each accepted connection's copy is then read off too, so that this one
    /// mistake costs `proxy-protocol/not-forwarded` and not every case whose destination
    /// reads the client's bytes.
    forwarded: bool,
    /// In a UDP run (`--udp`): the destination's UDP socket, on the same port number.
    udp: Option<crate::udp::UdpDestination>,
}

impl Destination {
    /// Binds a port outside the kernel's ephemeral range, so that after [`Destination::close`]
    /// no outgoing connection can take it before [`Destination::reopen`].
    pub async fn bind() -> io::Result<Self> {
        let mut last = None;
        for _ in 0..10 {
            let lease = free_port();
            let port = lease.port();
            match TcpListener::bind((HOST, port)).await {
                Ok(listener) => {
                    return Ok(Destination {
                        port,
                        _lease: lease,
                        listener: RwLock::new(Some(Arc::new(listener))),
                        headers: None,
                        client_headers: None,
                        forwarded: false,
                        udp: None,
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::ErrorKind::AddrInUse.into()))
    }

    /// The port the destination listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn current(&self) -> Option<Arc<TcpListener>> {
        self.listener
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The same destination in a run of PROXY protocol `mode` (none: plain connections): it
    /// reads the proxy's header off every connection it accepts, where the proxy sends one,
    /// and its clients send one first, where the proxy accepts one.
    pub fn in_mode(mut self, mode: Option<Mode>) -> Self {
        self.headers = mode.and_then(|m| m.send);
        self.client_headers = mode.and_then(|m| m.accept);
        self
    }

    /// The same destination for a proxy that passes its clients' headers on: each accepted
    /// connection's copy is read off after the proxy's own header (if any).
    pub(crate) fn reading_forwarded(mut self) -> Self {
        self.forwarded = true;
        self
    }

    /// A destination for a UDP run: it also listens for datagrams on its port number. A port
    /// whose UDP half cannot be bound is passed over for another, as a taken TCP port is.
    pub async fn bind_udp() -> io::Result<Self> {
        let mut last = None;
        for _ in 0..10 {
            let mut dest = Self::bind().await?;
            match crate::udp::UdpDestination::bind(dest.port).await {
                Ok(udp) => {
                    dest.udp = Some(udp);
                    return Ok(dest);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::ErrorKind::AddrInUse.into()))
    }

    /// The UDP socket, in a UDP run.
    pub fn udp(&self) -> Option<&crate::udp::UdpDestination> {
        self.udp.as_ref()
    }

    /// Accepts the next connection, its header (if any) left in it.
    pub(crate) async fn accept_plain(&self) -> io::Result<TcpStream> {
        let listener = self.current().ok_or(io::ErrorKind::NotConnected)?;
        Ok(listener.accept().await?.0)
    }

    /// The version of the PROXY protocol header the proxy sends, in a run where it does.
    pub fn headers(&self) -> Option<Version> {
        self.headers
    }

    /// The version of the PROXY protocol header the proxy accepts, in a run where it does:
    /// tprox's clients send one first.
    pub fn client_headers(&self) -> Option<Version> {
        self.client_headers
    }

    /// Accepts the next connection the proxy makes; in a PROXY protocol run, with its header
    /// read off (a connection that starts with no header keeps its bytes), and the copy of
    /// the client's header after it where the proxy was seen to pass those on.
    pub async fn accept(&self) -> io::Result<TcpStream> {
        Ok(self.accept_with_header().await?.0)
    }

    /// Accepts the next connection the proxy makes and, in a PROXY protocol run, reads its
    /// header: what was found (`None` in other runs), for the cases that judge the headers; a
    /// copy of the client's header behind it, where the proxy was seen to pass those on, is
    /// read off too.
    /// The header is read within [`PROMPT`]; a proxy writes it as soon as it has connected.
    pub async fn accept_with_header(&self) -> io::Result<(TcpStream, Option<Found>)> {
        let mut stream = self.accept_plain().await?;
        let found = self.read_header(&mut stream).await;
        if self.forwarded {
            crate::proxy_protocol::read(&mut stream, PROMPT).await;
        }
        Ok((stream, found))
    }

    /// In a PROXY protocol run, reads the header off a connection the proxy made to another
    /// listener of the case's own (an IPv6 destination), as [`Destination::accept`] does.
    pub async fn read_header(&self, stream: &mut TcpStream) -> Option<Found> {
        match self.headers {
            Some(_) => Some(crate::proxy_protocol::read(stream, PROMPT).await),
            None => None,
        }
    }

    /// Whether the destination listens now (it is not between [`Destination::close`] and
    /// [`Destination::reopen`]).
    pub fn is_listening(&self) -> bool {
        self.current().is_some() && self.udp.as_ref().is_none_or(|udp| udp.is_open())
    }

    /// Stops listening: connections to the destination are refused from now on.
    ///
    /// The listening socket is shut down before it is dropped. Dropping alone closes this
    /// process's descriptor, but a process that another thread of tprox is starting at that
    /// moment (a proxy for another case, between its fork and its exec) holds a copy, and
    /// the port would go on accepting connections until that process execs: a proxy's dial
    /// to a "closed" destination then succeeds. A shutdown stops the socket itself listening,
    /// whoever holds it, and leaves the port free for [`Destination::reopen`].
    pub fn close(&self) {
        let listener = self
            .listener
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(listener) = listener {
            let _ = socket2::SockRef::from(&*listener).shutdown(std::net::Shutdown::Both);
        }
    }

    /// Listens again on the same port (for datagrams too, in a UDP run).
    pub async fn reopen(&self) -> io::Result<()> {
        if let Some(udp) = &self.udp {
            udp.reopen().await?;
        }
        if self.current().is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind((HOST, self.port)).await?;
        *self.listener.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(listener));
        Ok(())
    }
}

/// Connects a client to the proxy at `proxy` and, in a run where the proxy accepts the PROXY
/// protocol, sends the header first: the one place every client of tprox's is opened, so that
/// each case and check runs on the stream after it as it would without one. The header names
/// [`crate::proxy_protocol::claimed_source`] as the client, `proxy` as its destination.
pub async fn connect_client(proxy: SocketAddr, dest: &Destination) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(proxy).await?;
    // Before the header, so that the client's first bytes after it never wait for its ACK.
    stream.set_nodelay(true)?;
    if let Some(version) = dest.client_headers {
        stream
            .write_all(&client_header(version, &stream, proxy)?)
            .await?;
    }
    Ok(stream)
}

/// The header a client of tprox's on `stream` sends to the proxy at `proxy` in an accept run.
pub fn client_header(
    version: Version,
    stream: &TcpStream,
    proxy: SocketAddr,
) -> io::Result<Vec<u8>> {
    let claimed = crate::proxy_protocol::claimed_source(stream.local_addr()?);
    Ok(crate::proxy_protocol::header(version, claimed, proxy))
}

/// A plain echo through the proxy: tprox's check that the proxy is alive and still accepting,
/// before and after each case. It identifies its own destination connection by a token, so
/// connections a case left behind cannot confuse it. Liveness only: a proxy that mangles data
/// is the cases' business, so a token with a few altered bytes still identifies the connection
/// and an altered echo still counts as one.
pub async fn survival_echo(
    proxy: SocketAddr,
    dest: &Destination,
    front: Option<&Front>,
    rng: &mut fastrand::Rng,
) -> Result<(), String> {
    let token: Vec<u8> = (0..16).map(|_| rng.alphanumeric() as u8).collect();
    if let Some(udp) = dest.udp() {
        return crate::udp::echo(proxy, udp, &token).await;
    }
    let mut client = match timeout(PROMPT, connect_client(proxy, dest)).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return Err(format!("connecting to the proxy failed: {e}")),
        Err(_) => {
            return Err(format!(
                "the proxy accepted no connection within {} s",
                PROMPT.as_secs()
            ))
        }
    };
    if let Some(front) = front {
        let target = SocketAddr::from(([127, 0, 0, 1], dest.port()));
        match timeout(PROMPT, front.handshake(&mut client, target)).await {
            Ok(Ok(())) => {}
            Ok(Err(refused)) => return Err(format!("the {front} handshake failed: {refused}")),
            Err(_) => {
                return Err(format!(
                    "the {front} handshake got no answer within {} s",
                    PROMPT.as_secs()
                ))
            }
        }
    }
    let server = async {
        // The stream is bound here, outside any inner scope, so that it lives until the
        // client side has finished: closing it right after the echo would make this check
        // depend on how the proxy handles a destination's EOF (R5), which is the shutdown
        // cases' business, and a proxy that drops what it holds at that EOF would then fail
        // every case here.
        let mut accepted = accept_carrying(dest, &token, true, PROMPT).await;
        if let Some((stream, token)) = accepted.as_mut() {
            let _ = stream.write_all(token).await;
        }
        std::future::pending::<()>().await;
        drop(accepted);
    };
    let client_side = async {
        client
            .write_all(&token)
            .await
            .map_err(|e| format!("writing to the proxy failed: {e}"))?;
        match read_exact_within(&mut client, token.len(), PROMPT).await {
            Ok(_) => Ok(()),
            Err(short) => Err(format!("the echo did not come back: received {short}")),
        }
    };
    tokio::select! {
        result = client_side => result,
        _ = server => Err("the destination side ended early".into()),
    }
}

/// Accepts the proxy's connections to `dest` until one whose first bytes are `token` (with
/// `loose`, bytes that resemble it), and returns it with those bytes; the others are stale
/// ones (an earlier client's, forwarded late, or one a front dialed for a request it then
/// dropped) and are closed. `None` if none came within `limit`.
pub async fn accept_carrying(
    dest: &Destination,
    token: &[u8],
    loose: bool,
    limit: Duration,
) -> Option<(TcpStream, Vec<u8>)> {
    let (found_tx, mut found_rx) = tokio::sync::mpsc::channel::<(TcpStream, Vec<u8>)>(1);
    let search = async {
        loop {
            tokio::select! {
                accepted = dest.accept() => {
                    let Ok(mut stream) = accepted else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    // Each one is read on its own, so that a silent stale one holds up nothing.
                    let found = found_tx.clone();
                    let token = token.to_vec();
                    tokio::spawn(async move {
                        let got = read_exact_within(&mut stream, token.len(), limit).await;
                        let carries = |got: &Vec<u8>| *got == token || (loose && resembles(got, &token));
                        if let Some(got) = got.ok().filter(carries) {
                            let _ = found.send((stream, got)).await;
                        }
                    });
                }
                Some(found) = found_rx.recv() => return found,
            }
        }
    };
    timeout(limit, search).await.ok()
}

/// Whether `got` is `token` with at most a quarter of its bytes altered: a random token from
/// any other connection differs in nearly all of them.
fn resembles(got: &[u8], token: &[u8]) -> bool {
    let differing = got.iter().zip(token).filter(|(a, b)| a != b).count();
    got.len() == token.len() && differing <= token.len() / 4
}

/// When the proxy opens its connection to the destination, as tprox saw for the readiness
/// probe (a connection that sends nothing and closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialing {
    /// At once, when the client connects: what the contract expects (R8), and what every case
    /// assumes unless told otherwise.
    OnAccept,
    /// Not before the client sends something (or not within the probe's wait): the proxy
    /// reads the client first, as a proxy that routes by the first bytes does. Only
    /// `connect/server-first` depends on who speaks first; every other case lets the client
    /// speak first (a primer the destination reads and checks, said in the case's trace), so
    /// that this one design choice costs the rule it breaks and no other case.
    OnClientData,
}

/// What asking the proxy for the destination ([`Ctx::ask`]) came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// Nothing to ask: the proxy dials by itself.
    Nothing,
    /// A primer was sent, or the front answered with success.
    Tunnel,
    /// The front answered with its protocol's refusal.
    Refused {
        /// Which refusal, for people.
        why: String,
        /// An HTTP front's answer that lets it keep the connection for another request
        /// (`Content-Length` or chunked, no `Connection: close`), as HTTP/1.1 allows: the
        /// client must not wait for a close then.
        may_stay_open: bool,
    },
    /// The front closed, reset, went silent or broke its protocol during the handshake.
    Broken(String),
}

/// A case's view of one running proxy.
pub struct Ctx {
    proxy: SocketAddr,
    /// Whether pairs must be primed by the client: see [`Dialing`].
    dialing: Dialing,
    /// Numbers the primers, so that a stale connection's primer is never taken for a new one's.
    primers: std::sync::atomic::AtomicU32,
    /// The handshake every client does first, against a SOCKS5 or HTTP CONNECT proxy.
    front: Option<Arc<Front>>,
    /// Handshakes done, so that the trace tells of the first only.
    handshakes: std::sync::atomic::AtomicU32,
    /// The proxy's process group, for the resource probes.
    pub proxy_pgid: i32,
    /// The destination the proxy forwards to, played by tprox.
    pub dest: Arc<Destination>,
    /// The stall timeout the proxy was told to use (R7).
    pub stall: Duration,
    /// How big the case's traffic is (connections, bulk bytes).
    pub scale: Scale,
    /// Seeded from the run's seed and the case id, so a case's payloads are reproducible alone.
    pub rng: fastrand::Rng,
    /// What the case did, step by step: shown under a failure and with `--verbose`.
    pub trace: Trace,
}

impl Ctx {
    /// The context of one case against one running proxy.
    pub fn new(
        proxy: SocketAddr,
        proxy_pgid: i32,
        dest: Arc<Destination>,
        stall: Duration,
        scale: Scale,
        seed: u64,
        dialing: Dialing,
    ) -> Self {
        Ctx {
            proxy,
            dialing,
            primers: Default::default(),
            front: None,
            handshakes: Default::default(),
            proxy_pgid,
            dest,
            stall,
            scale,
            rng: fastrand::Rng::with_seed(seed),
            trace: Trace::new(),
        }
    }

    /// The same context for a SOCKS5 or HTTP CONNECT front: every client does `front`'s
    /// handshake first.
    pub fn with_front(mut self, front: Option<Arc<Front>>) -> Self {
        self.front = front;
        self
    }

    /// The address the proxy listens on.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy
    }

    /// Connects a client to the proxy, through the front's handshake when there is one: what
    /// is returned carries the destination's stream.
    pub async fn connect(&self) -> Result<TcpStream, Failure> {
        let mut stream = self.connect_only().await?;
        if self.front.is_none() {
            // A primer, where one is needed, comes with the accept (see `accept_for`).
            return Ok(stream);
        }
        match self.ask(&mut stream).await {
            Asked::Tunnel | Asked::Nothing => Ok(stream),
            Asked::Refused { why, .. } => Err(Failure::new(
                format!(
                    "the proxy's {} handshake opens a tunnel to the destination {}",
                    self.front_name(),
                    self.target()
                ),
                why,
            )
            .hint("the proxy refused a request for a destination that listens")),
            Asked::Broken(why) => Err(Failure::new(
                format!("the proxy completes the {} handshake", self.front_name()),
                why,
            )),
        }
    }

    fn front_name(&self) -> String {
        self.front
            .as_ref()
            .map(|f| f.to_string())
            .unwrap_or_default()
    }

    /// The destination as a front's client names it.
    fn target(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.dest.port()))
    }

    /// The front, if the proxy under test is one.
    pub fn front(&self) -> Option<&Front> {
        self.front.as_deref()
    }

    /// Asks the proxy for the destination on a connected `client`, when the proxy needs asking:
    /// a front's handshake (and its answer), or a primer for a proxy that dials only once the
    /// client speaks. For cases that judge the answer themselves (a refused destination).
    pub async fn ask(&self, client: &mut TcpStream) -> Asked {
        let Some(front) = &self.front else {
            return match self.prime(client).await {
                Some(_) => Asked::Tunnel,
                None => Asked::Nothing,
            };
        };
        let answer = timeout(PROMPT, front.handshake(client, self.target())).await;
        let n = self
            .handshakes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match answer {
            Ok(Ok(())) => {
                if n == 0 {
                    self.trace.event(format_args!(
                        "{front} handshake for {} done (every client of this case does one first)",
                        self.target()
                    ));
                }
                Asked::Tunnel
            }
            Ok(Err(crate::front::Refused::Answered {
                text: why, head, ..
            })) => {
                self.trace
                    .event(format_args!("the {front} handshake was refused: {why}"));
                Asked::Refused {
                    why,
                    may_stay_open: crate::front::http_may_persist(&head),
                }
            }
            Ok(Err(crate::front::Refused::Broken(why))) => {
                self.trace
                    .event(format_args!("the {front} handshake broke: {why}"));
                Asked::Broken(why)
            }
            Err(_) => Asked::Broken(format!(
                "no answer to the {front} handshake within {} s",
                PROMPT.as_secs()
            )),
        }
    }

    /// Connects a client to the proxy and nothing more: no handshake, no primer (in a run
    /// where the proxy accepts the PROXY protocol, the client's header is sent).
    pub async fn connect_only(&self) -> Result<TcpStream, Failure> {
        self.connect_with(connect_client(self.proxy, &self.dest))
            .await
    }

    /// Connects a client to the proxy and sends nothing at all, not even a PROXY protocol
    /// header where the proxy expects one: for the cases that judge how it takes a header.
    pub async fn connect_bare(&self) -> Result<TcpStream, Failure> {
        self.connect_with(TcpStream::connect(self.proxy)).await
    }

    async fn connect_with(
        &self,
        connecting: impl std::future::Future<Output = io::Result<TcpStream>>,
    ) -> Result<TcpStream, Failure> {
        match timeout(PROMPT, connecting).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                self.trace.event(format_args!("client connected from {}", local(&stream)));
                Ok(stream)
            }
            Ok(Err(e)) => Err(Failure::new(
                format!("the proxy accepts connections on {}", self.proxy),
                format!("connecting failed: {e}"),
            )
            .hint("the proxy stopped listening, or crashed")),
            Err(_) => Err(Failure::new(
                format!("the proxy accepts connections on {}", self.proxy),
                format!("no connection within {} s", PROMPT.as_secs()),
            )
            .hint("the proxy stopped accepting: its accept loop is blocked or it hit a descriptor limit")),
        }
    }

    /// How the proxy dials, as seen when it started.
    pub fn dialing(&self) -> Dialing {
        self.dialing
    }

    /// Writes a primer from `client` when the proxy dials only once the client has sent
    /// something; returns the primer written, if any. For cases that wait for the proxy to
    /// act (a refused destination) rather than for a connection.
    pub async fn prime(&self, client: &mut TcpStream) -> Option<Vec<u8>> {
        if self.dialing != Dialing::OnClientData {
            return None;
        }
        let n = self
            .primers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let primer = format!("tprox primer {n:05}\n").into_bytes();
        client.write_all(&primer).await.ok()?;
        if n == 0 {
            self.trace.event(format_args!(
                "client spoke first ({} bytes, read off again by the destination), as on every connection of this case after it",
                primer.len()
            ));
        }
        Some(primer)
    }

    /// Accepts the destination connection that the proxy opens for `client`: at once, or,
    /// for a proxy that dials only after the client speaks, after a primer that the
    /// destination reads off again, so that the case starts with both streams untouched.
    pub async fn accept_for(&self, client: &mut TcpStream) -> Result<TcpStream, Failure> {
        let Some(primer) = self.prime(client).await else {
            return self.accept().await;
        };
        let deadline = tokio::time::Instant::now() + PROMPT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let mut server = match timeout(left, self.accept()).await {
                Ok(accepted) => accepted?,
                Err(_) => return Err(self.not_dialed()),
            };
            // A connection without this primer is a stale one (the readiness probe's, forwarded
            // late): it is dropped, as the case never asked for it.
            if let Ok(got) = read_exact_within(&mut server, primer.len(), left).await {
                if got == primer {
                    return Ok(server);
                }
            }
        }
    }

    fn not_dialed(&self) -> Failure {
        Failure::new(
            "the proxy opens a connection to the destination for every client, at once",
            format!(
                "no connection reached the destination within {} s of the client connecting",
                PROMPT.as_secs()
            ),
        )
        .hint("the proxy serves one connection at a time, or dials the destination only after the client sends data")
    }

    /// Accepts the proxy's connection to the destination.
    pub async fn accept(&self) -> Result<TcpStream, Failure> {
        match timeout(PROMPT, self.dest.accept()).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                self.trace
                    .event(format_args!("destination accepted {}", peer(&stream)));
                Ok(stream)
            }
            Ok(Err(e)) => Err(Failure::new(
                "the proxy connects to the destination",
                format!("accept on the destination failed: {e}"),
            )),
            Err(_) => Err(self.not_dialed()),
        }
    }

    /// Connects a client and accepts the matching destination connection (priming it first
    /// where the proxy needs that: see [`Dialing`]).
    pub async fn open_pair(&self) -> Result<(TcpStream, TcpStream), Failure> {
        let mut client = self.connect().await?;
        let server = self.accept_for(&mut client).await?;
        Ok((client, server))
    }

    /// `len` random letters and digits: for messages that should read well in a failure.
    pub fn text(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.rng.alphanumeric() as u8).collect()
    }

    /// `len` random bytes from the case's seeded source.
    pub fn payload(&mut self, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        self.rng.fill(&mut data);
        data
    }
}

fn local(stream: &TcpStream) -> String {
    stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

fn peer(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

/// A time-stamped log of a case's events, shown with `-v` and on failure.
#[derive(Clone)]
pub struct Trace {
    start: Instant,
    events: Arc<Mutex<Vec<String>>>,
    /// What the case measured, for the report (kept with the trace because both are handed
    /// out of the case body the same way: the body owns the context, the runner a clone).
    figures: Arc<Mutex<Vec<crate::figure::Figure>>>,
}

impl Default for Trace {
    fn default() -> Self {
        Self::new()
    }
}

impl Trace {
    fn new() -> Self {
        Trace {
            start: Instant::now(),
            events: Arc::default(),
            figures: Arc::default(),
        }
    }

    /// Records one step, with the time since the case began.
    pub fn event(&self, what: impl Display) {
        let line = format!("{:>8.3}s  {what}", self.start.elapsed().as_secs_f64());
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    /// Time since the case began.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Records a figure the case measured, for its report.
    pub fn figure(&self, figure: crate::figure::Figure) {
        self.figures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(figure);
    }

    /// The figures recorded, in order.
    pub fn figures(&self) -> Vec<crate::figure::Figure> {
        self.figures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The recorded steps, in order.
    pub fn lines(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_destination_refuses_even_while_another_process_holds_its_socket() {
        let dest = Destination::bind().await.unwrap();
        // A copy of the listening descriptor, as a process forked at the wrong moment holds.
        let copy = {
            let listener = dest.current().unwrap();
            socket2::SockRef::from(&*listener).try_clone().unwrap()
        };
        dest.close();
        assert!(!dest.is_listening());
        let refused = TcpStream::connect((HOST, dest.port())).await;
        assert!(
            refused.is_err(),
            "the closed port accepted a connection while a copy of its socket lived"
        );
        dest.reopen()
            .await
            .expect("the port can be listened on again while the copy lives");
        let accepted = tokio::join!(TcpStream::connect((HOST, dest.port())), dest.accept());
        assert!(accepted.0.is_ok() && accepted.1.is_ok());
        drop(copy);
    }
}
