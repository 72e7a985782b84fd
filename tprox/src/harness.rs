//! What a case body gets to work with: the proxy's address, the fake destination, the stall
//! timeout, a seeded random source, and a trace of what happened.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use crate::case::Failure;

/// How long "promptly" may take: the time tprox allows for anything the contract expects to
/// happen at once (an echo, a connect, a close). Generous on purpose: a correct proxy on a busy
/// 2-core machine answers in milliseconds, a broken one never.
pub const PROMPT: Duration = Duration::from_secs(5);

/// Scale settings for the cases that scale.
#[derive(Debug, Clone)]
pub struct Scale {
    /// Bytes pushed through the bulk chain (the original tester used 2 MiB).
    pub bulk_bytes: usize,
    /// Connections in the long echo and bulk chains (the original used 20).
    pub chain_length: usize,
}

impl Default for Scale {
    fn default() -> Self {
        Scale {
            bulk_bytes: 2 * 1024 * 1024,
            chain_length: 20,
        }
    }
}

/// A case's view of one running proxy.
pub struct Ctx {
    proxy: SocketAddr,
    dest: Arc<TcpListener>,
    /// The stall timeout the proxy was told to use (R7).
    pub stall: Duration,
    pub scale: Scale,
    /// Seeded from the run's seed and the case id, so a case's payloads are reproducible alone.
    pub rng: fastrand::Rng,
    pub trace: Trace,
}

impl Ctx {
    pub fn new(
        proxy: SocketAddr,
        dest: Arc<TcpListener>,
        stall: Duration,
        scale: Scale,
        seed: u64,
    ) -> Self {
        Ctx {
            proxy,
            dest,
            stall,
            scale,
            rng: fastrand::Rng::with_seed(seed),
            trace: Trace::new(),
        }
    }

    /// Connects a client to the proxy.
    pub async fn connect(&self) -> Result<TcpStream, Failure> {
        match timeout(PROMPT, TcpStream::connect(self.proxy)).await {
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

    /// Accepts the proxy's connection to the destination.
    pub async fn accept(&self) -> Result<TcpStream, Failure> {
        match timeout(PROMPT, self.dest.accept()).await {
            Ok(Ok((stream, _))) => {
                let _ = stream.set_nodelay(true);
                self.trace.event(format_args!("destination accepted {}", peer(&stream)));
                Ok(stream)
            }
            Ok(Err(e)) => Err(Failure::new(
                "the proxy connects to the destination",
                format!("accept on the destination failed: {e}"),
            )),
            Err(_) => Err(Failure::new(
                "the proxy opens a connection to the destination for every client, at once",
                format!(
                    "no connection reached the destination within {} s of the client connecting",
                    PROMPT.as_secs()
                ),
            )
            .hint("the proxy serves one connection at a time, or dials the destination only after the client sends data")),
        }
    }

    /// Connects a client and accepts the matching destination connection.
    pub async fn open_pair(&self) -> Result<(TcpStream, TcpStream), Failure> {
        let client = self.connect().await?;
        let server = self.accept().await?;
        Ok((client, server))
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
}

impl Trace {
    fn new() -> Self {
        Trace {
            start: Instant::now(),
            events: Arc::default(),
        }
    }

    pub fn event(&self, what: impl Display) {
        let line = format!("{:>8.3}s  {what}", self.start.elapsed().as_secs_f64());
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    pub fn lines(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
