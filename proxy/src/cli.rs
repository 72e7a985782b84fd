//! The command line: the lab form `tprox-relay DEST_HOST DEST_PORT LISTEN_PORT`, `-p` mappings and
//! mapping files, turned into bound listeners, or into one clear line on stderr and exit 2.

use std::ffi::OsString;
use std::io::Write;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, ValueEnum};

use crate::mapping::{self, Defaults, Mapping};
use crate::relay::Transfer;
use crate::server::{self, Options};
use crate::via::HttpProxy;

/// A TCP proxy: forwards every connection accepted on a listening port to a destination.
///
/// Data flows both ways unchanged. When one side shuts down its sending direction, the proxy
/// passes the shutdown on after delivering everything it holds, and keeps the other direction
/// open. A direction that cannot deliver any data for the stall timeout aborts its connection.
///
/// One process can serve several mappings, each with its own listener: give -p once per mapping
/// or a TOML file with --config. Every listener prints `Listening on ADDR:PORT` on stdout when it
/// is ready (port 0 picks a free port). SIGTERM or SIGINT stops accepting, lets open connections
/// finish for --grace seconds, then closes them.
#[derive(Debug, Parser)]
#[command(
    name = "tprox-relay",
    version,
    override_usage = "tprox-relay [OPTIONS] <DEST_HOST> <DEST_PORT> <LISTEN_PORT>\n       \
                      tprox-relay [OPTIONS] -p [BIND:]LOCAL:HOST:PORT [-p ...]\n       \
                      tprox-relay [OPTIONS] --socks5 [BIND:]PORT | --http-connect [BIND:]PORT\n       \
                      tprox-relay [OPTIONS] --config <FILE>",
    after_help = "Examples:\n  \
      tprox-relay 127.0.0.1 9000 8080               the lab form: :8080 -> 127.0.0.1:9000\n  \
      tprox-relay -p 8080:db:5432 -p [::]:0:web:80  two mappings; the second dual-stack, any port\n  \
      tprox-relay -p udp:5353:10.0.0.53:53          UDP: a session per client, closed when idle\n  \
      tprox-relay -p 0:intranet:443 --via http://u:p@squid:3128 --direct-fallback\n  \
      tprox-relay --config mappings.toml -d         mappings from a file, one log line per connection\n  \
      tprox-relay -p [::]:443:127.0.0.1:8443 --sni a.example=10.0.0.5:443 --sni '*.b.example=10.0.0.6:443'\n  \
      tprox-relay --socks5 1080 --http-connect 3128 --front-credentials pass.txt --allow 10.1.0.0/16:443\n\n\
      A mapping file has [[mapping]] tables with listen = \"ADDR:PORT\", dest = \"HOST:PORT\", and\n\
      optionally protocol (tcp or udp), via, direct_fallback, max_connections, stall_timeout, send_proxy, accept_proxy, sni (a table of\n\
      NAME = \"HOST:PORT\") and sni_only of its own; settings it leaves out come from the\n\
      command line. A front has mode = \"socks5\" or \"http-connect\" instead of dest, and\n\
      optionally credentials_file and allow (a list of NET[/BITS][:PORTS]).\n\n\
      A front's client that has not finished its handshake within the stall timeout is closed."
)]
pub struct Args {
    /// Host name or address of the destination server (lab form).
    pub dest_host: Option<String>,
    /// Port of the destination server, 1-65535 (lab form).
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    pub dest_port: Option<u16>,
    /// Port to accept client connections on, 1-65535 (lab form).
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    pub listen_port: Option<u16>,
    /// A mapping: listen on BIND:LOCAL (BIND defaults to 127.0.0.1; LOCAL 0 picks a free port)
    /// and forward to HOST:PORT. IPv6 addresses in brackets; `[::]` listens dual-stack. Repeatable.
    /// `udp:` before it forwards UDP datagrams instead (a session per client address).
    #[arg(short = 'p', long = "map", value_name = "[udp:][BIND:]LOCAL:HOST:PORT")]
    pub maps: Vec<String>,
    /// Read mappings from a TOML file (see below).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Seconds a connection may hold undeliverable data before it is aborted.
    #[arg(long, default_value_t = 10.0, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub stall_timeout: f64,
    /// Address to listen on in the lab form; use 0.0.0.0 (or ::) to accept clients from other
    /// machines.
    #[arg(long, default_value = mapping::DEFAULT_BIND, value_name = "ADDR")]
    pub listen_host: String,
    /// Most connections served at once per mapping, across all event loops; further clients
    /// wait until one ends (in the listen backlog, or accepted but neither dialed nor read, at
    /// most one per event loop). Each connection takes two descriptors (and two pipes while data flows
    /// with splice); the proxy raises its descriptor limit to the hard limit at start.
    #[arg(long, default_value_t = 16384, value_name = "N")]
    pub max_connections: usize,
    /// Reach destinations through an HTTP proxy with CONNECT, with optional Basic
    /// authentication.
    #[arg(long, value_name = "http://[USER:PASS@]HOST:PORT")]
    pub via: Option<HttpProxy>,
    /// With --via: dial the destination directly when the HTTP proxy cannot be reached.
    #[arg(long, requires = "via")]
    pub direct_fallback: bool,
    /// Route TLS clients by the server name in their ClientHello (without terminating TLS):
    /// NAME (or *.DOMAIN) goes to HOST:PORT; other names go to the mapping's destination.
    /// Repeatable.
    #[arg(long, value_name = "NAME=HOST:PORT")]
    pub sni: Vec<String>,
    /// With --sni: close clients whose server name has no route, instead of forwarding them to
    /// the mapping's destination.
    #[arg(long, requires = "sni")]
    pub sni_only: bool,
    /// How bytes are moved: splice (bulk data zero-copy through a pipe, on Linux; requests and
    /// replies through a small buffer), buffered (always through a buffer), or auto (splice
    /// where available).
    #[arg(long, value_enum, default_value_t = CopyMode::Auto, value_name = "MODE")]
    pub copy: CopyMode,
    /// Seconds open connections may go on after SIGTERM or SIGINT before they are closed.
    #[arg(long, default_value_t = 5.0, value_name = "SECS", value_parser = parse_grace, allow_negative_numbers = true)]
    pub grace: f64,
    /// Log one line per connection when it ends: client, destination, bytes each way, duration,
    /// and how it ended.
    #[arg(short = 'd', long)]
    pub log_connections: bool,
    /// Log every connection event on stderr.
    #[arg(short, long)]
    pub verbose: bool,
    /// A SOCKS5 front (RFC 1928): listen on BIND:PORT (BIND defaults to 127.0.0.1) and let each
    /// client name its destination with CONNECT. Repeatable. Clients may go only where --allow
    /// says (loopback by default).
    #[arg(long = "socks5", value_name = "[BIND:]PORT")]
    pub socks5: Vec<String>,
    /// An HTTP CONNECT front: listen on BIND:PORT and tunnel each `CONNECT HOST:PORT` request.
    /// Repeatable. Clients may go only where --allow says (loopback by default).
    #[arg(long = "http-connect", value_name = "[BIND:]PORT")]
    pub http_connect: Vec<String>,
    /// The username and password every front requires (SOCKS5 username/password, HTTP Basic
    /// Proxy-Authorization): a file whose first line is USER:PASSWORD. Never logged.
    #[arg(long, value_name = "FILE")]
    pub front_credentials: Option<PathBuf>,
    /// Destinations a front's clients may ask for: NET[/BITS][:PORT[-PORT]], e.g.
    /// 10.1.0.0/16:443 or [fd00::]/8. Repeatable. Default: 127.0.0.0/8 and ::1, any port. A front
    /// that dials anything anyone asks is an open relay: allow only what your clients need.
    #[arg(long, value_name = "NET")]
    pub allow: Vec<String>,
    /// Write a PROXY protocol header (v1 text or v2 binary, haproxy's proxy-protocol.txt) first
    /// on each connection to the destination, telling it the client's address and port and the
    /// address the client connected to. For a front, the header carries the front's client.
    #[arg(long, value_enum, value_name = "VERSION")]
    pub send_proxy: Option<crate::proxy_header::SendProxy>,
    /// Expect a PROXY protocol header (v1 or v2) first from every client, as a proxy behind
    /// another one that sends it does: the client it names is the one sent on with
    /// --send-proxy. A connection that does not start with a valid header, or does not finish
    /// it within the stall timeout, is closed; a v2 LOCAL header (a health check) keeps the
    /// connection's real endpoints.
    #[arg(long)]
    pub accept_proxy: bool,
    /// Event loops, one thread each, sharing every listening port (SO_REUSEPORT): a connection
    /// is accepted, dialed and relayed on one thread. Default: one per core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Run each event loop on a CPU of its own, and have the kernel queue each client on the
    /// loop of the CPU its handshake arrived on (Linux 6.1 or later, SO_INCOMING_CPU): no other
    /// CPU is woken to accept, dial and relay it. More connections per second with less CPU
    /// time each, most on virtual machines; but a loop cannot move to an idle CPU, so busy
    /// streams that all arrive on one CPU share one loop. Needs no more --threads than CPUs.
    #[arg(long)]
    pub pin_cpus: bool,
    /// Which event loop serves plain forwarding (every client to one address, no front, --sni,
    /// PROXY protocol or --via): epoll, the proxy's own on Linux, which registers each socket
    /// once and makes about four system calls fewer per connection; or tokio, which serves
    /// every other mapping anyway.
    #[arg(long, value_enum, default_value_t = LoopMode::Epoll, value_name = "LOOP")]
    pub event_loop: LoopMode,
    /// The lab form's mapping forwards UDP datagrams instead of TCP connections (a -p mapping
    /// says so itself: -p udp:LOCAL:HOST:PORT). Each client address and port is a session with
    /// its own socket towards the destination; a session with nothing either way for the stall
    /// timeout is closed.
    #[arg(long)]
    pub udp: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
/// How bytes are moved (`--copy`).
pub enum CopyMode {
    /// Splice where the system has it, else the buffered copy.
    Auto,
    /// Bulk data through a pipe with splice(2), never copied; small messages through a buffer.
    Splice,
    /// A buffer per direction.
    Buffered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
/// Which event loop serves plain forwarding (`--event-loop`).
pub enum LoopMode {
    /// The proxy's own epoll loop (Linux; tokio's elsewhere).
    Epoll,
    /// tokio's.
    Tokio,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| "expected a positive number of seconds, such as 10 or 0.5".to_string())?;
    mapping::seconds(secs).map(|_| secs)
}

fn parse_grace(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if (0.0..1e6).contains(&secs) => Ok(secs),
        _ => Err("expected a number of seconds, 0 or more, such as 5".into()),
    }
}

/// Everything the proxy needs to run: the mappings and the process-wide options.
#[derive(Debug, Clone)]
pub struct Config {
    /// What is forwarded where, one listener each.
    pub mappings: Vec<Mapping>,
    /// What applies to the whole process.
    pub options: Options,
}

impl Args {
    /// The mappings the arguments describe, or a message saying what is wrong.
    pub fn into_config(self) -> Result<Config, String> {
        let mut sni = crate::sni::Routes {
            unknown_closed: self.sni_only,
            ..Default::default()
        };
        for spec in &self.sni {
            sni.add(spec)?;
        }
        let defaults = Defaults {
            sni,
            via: self.via.clone(),
            direct_fallback: self.direct_fallback,
            max_connections: self.max_connections.max(1),
            stall_timeout: Duration::from_secs_f64(self.stall_timeout),
            credentials: match &self.front_credentials {
                Some(path) => Some(crate::front::Credentials::from_file(path)?),
                None => None,
            },
            allow: if self.allow.is_empty() {
                crate::front::Allow::default()
            } else {
                crate::front::Allow::parse(&self.allow)?
            },
            send_proxy: self.send_proxy,
            accept_proxy: self.accept_proxy,
        };
        let mut mappings = Vec::new();
        match (&self.dest_host, self.dest_port, self.listen_port) {
            (Some(host), Some(dest_port), Some(listen_port)) => {
                let mut mapping = defaults.mapping(
                    self.listen_host.clone(),
                    listen_port,
                    host.clone(),
                    dest_port,
                );
                if self.udp {
                    mapping.udp = true;
                    mapping.check_udp()?;
                }
                mappings.push(mapping);
            }
            (None, None, None) if self.udp => {
                return Err(
                    "--udp is for the lab form (DEST_HOST DEST_PORT LISTEN_PORT); a -p mapping \
                     says udp: itself"
                        .into(),
                )
            }
            (None, None, None) => {}
            _ => {
                return Err("the lab form needs all three: DEST_HOST DEST_PORT LISTEN_PORT".into())
            }
        }
        for spec in &self.maps {
            mappings.push(mapping::parse_spec(spec, &defaults)?);
        }
        for spec in &self.socks5 {
            mappings.push(mapping::parse_front(
                spec,
                crate::front::Kind::Socks5,
                &defaults,
            )?);
        }
        for spec in &self.http_connect {
            mappings.push(mapping::parse_front(
                spec,
                crate::front::Kind::HttpConnect,
                &defaults,
            )?);
        }
        if let Some(path) = &self.config {
            mappings.extend(mapping::load_file(path, &defaults)?);
        }
        let threads = self.threads.map_or_else(server::cores, usize::from);
        if self.pin_cpus {
            // Checked here, so that it is bad input (2), not a proxy that failed to start.
            server::cpus_to_pin(threads).map_err(|e| e.to_string())?;
        }
        let copy = match self.copy {
            CopyMode::Buffered => Transfer::Buffered,
            CopyMode::Splice | CopyMode::Auto => Transfer::Splice,
        };
        Ok(Config {
            mappings,
            options: Options {
                copy,
                log_connections: self.log_connections,
                verbose: self.verbose,
                grace: Duration::from_secs_f64(self.grace),
                threads,
                event_loop: match self.event_loop {
                    LoopMode::Epoll => server::EventLoop::Epoll,
                    LoopMode::Tokio => server::EventLoop::Tokio,
                },
                pin_cpus: self.pin_cpus,
            },
        })
    }
}

/// Runs the proxy with the given command line (program name first) and returns its exit code:
/// 0 after a clean stop, 1 when a listener cannot be opened, 2 for bad input. Errors are one line
/// on stderr; the proxy never panics on bad input.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = match Args::try_parse_from(args) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let config = match args.into_config() {
        Ok(config) if config.mappings.is_empty() => {
            let _ = Args::command()
                .error(
                    clap::error::ErrorKind::MissingRequiredArgument,
                    "nothing to forward: give DEST_HOST DEST_PORT LISTEN_PORT, -p mappings, \
                     --socks5 or --http-connect fronts, or --config FILE",
                )
                .print();
            return ExitCode::from(2);
        }
        Ok(config) => config,
        Err(message) => {
            eprintln!("tprox-relay: {message}");
            return ExitCode::from(2);
        }
    };
    for mapping in &config.mappings {
        if let Err(message) = check_destination(mapping) {
            eprintln!("tprox-relay: {message}");
            return ExitCode::from(2);
        }
    }
    raise_descriptor_limit();
    // The control side only: the event loops have runtimes of their own (see `server`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tprox-relay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let mut bound = Vec::new();
        let mut datagrams = Vec::new();
        for mapping in config.mappings.iter().filter(|m| m.udp) {
            match crate::udp::bind(mapping) {
                Ok(socket) => datagrams.push((socket, mapping.clone())),
                Err(e) => {
                    eprintln!(
                        "tprox-relay: cannot listen for UDP on {}: {e}",
                        crate::host_port(&mapping.bind, mapping.local_port)
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
        for mapping in config.mappings.iter().filter(|m| !m.udp) {
            match server::bind(mapping, config.options.threads) {
                Ok(listener) => bound.push(listener),
                Err(e) => {
                    eprintln!(
                        "tprox-relay: cannot listen on {}: {e}",
                        crate::host_port(&mapping.bind, mapping.local_port)
                    );
                    return ExitCode::FAILURE;
                }
            }
        }
        // Listening is announced only once a signal stops the proxy gracefully: a SIGTERM right
        // after the announcement must not meet the default action (exit without grace).
        let signals = StopSignals::install();
        let verbose = config.options.verbose;
        let serving = match server::start(bound, config.options).await {
            Ok(serving) => serving,
            Err(e) => {
                eprintln!("tprox-relay: cannot start the event loops: {e}");
                return ExitCode::FAILURE;
            }
        };
        // UDP mappings are served on this thread's runtime, beside the stop: a datagram
        // costs one receive and one send, and a session no task of an event loop.
        let mut udp_addrs = Vec::new();
        for (socket, mapping) in datagrams {
            udp_addrs.push(socket.local_addr().ok());
            tokio::spawn(async move {
                if let Err(e) = crate::udp::serve(socket, mapping.clone(), verbose).await {
                    eprintln!("tprox-relay: UDP mapping {mapping} stopped: {e}");
                }
            });
        }
        announce(serving.local_addrs());
        for addr in udp_addrs.into_iter().flatten() {
            announce_udp(addr);
        }
        let stop = || {
            let signals = signals.clone();
            async move { signals.next().await }
        };
        match serving.run(stop).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tprox-relay: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// One `Listening on ADDR:PORT` line per mapping, flushed at once, so that a script (or a test)
/// can read the ports that port 0 picked.
fn announce(addrs: &[std::net::SocketAddr]) {
    let mut out = std::io::stdout().lock();
    for addr in addrs {
        let _ = writeln!(out, "Listening on {addr}");
    }
    let _ = out.flush();
}

/// `Listening on udp ADDR:PORT`, for a UDP mapping.
fn announce_udp(addr: std::net::SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Listening on udp {addr}");
    let _ = out.flush();
}

/// Resolves a destination once at startup so that a typo fails loudly and at once, rather than
/// as a closed connection for every client. A destination behind an HTTP proxy is the proxy's
/// to resolve, and may not resolve here at all.
fn check_destination(mapping: &Mapping) -> Result<(), String> {
    if mapping.via.is_some() || mapping.front.is_some() {
        return Ok(());
    }
    let routes = mapping.sni.names.values().map(|(h, p)| (h.as_str(), *p));
    for dest in std::iter::once((mapping.dest_host.as_str(), mapping.dest_port)).chain(routes) {
        resolves(dest)?;
    }
    Ok(())
}

fn resolves((host, port): (&str, u16)) -> Result<(), String> {
    match (host, port).to_socket_addrs() {
        Ok(addrs) if addrs.len() > 0 => Ok(()),
        Ok(_) => Err(format!("destination host '{host}' has no address")),
        Err(e) => Err(format!("cannot resolve destination host '{host}': {e}")),
    }
}

/// Each pair takes two descriptors (four with splice pipes): take every descriptor the hard
/// limit allows, as servers do, rather than fail at the soft limit's default of 1024.
fn raise_descriptor_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// SIGTERM and SIGINT, caught from the moment they are installed.
#[derive(Clone)]
struct StopSignals(
    Option<
        std::sync::Arc<
            tokio::sync::Mutex<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
        >,
    >,
);

impl StopSignals {
    /// Catches the signals from now on. Without handlers (the system refused them) the
    /// default action (exit) still stops the proxy.
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => StopSignals(Some(std::sync::Arc::new(tokio::sync::Mutex::new(
                (term, int),
            )))),
            _ => StopSignals(None),
        }
    }

    /// Waits for the next SIGTERM or SIGINT and names it.
    async fn next(&self) -> &'static str {
        let Some(signals) = &self.0 else {
            return std::future::pending().await;
        };
        let mut signals = signals.lock().await;
        let (term, int) = &mut *signals;
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}
