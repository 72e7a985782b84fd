//! `tprox bench`: proxies side by side under the same load in one run, with a direct
//! connection as the physical limit of the machine.
//!
//! For each proxy (a [`crate::profiles`] profile, or a command of the user's) tprox measures
//! one-stream and N-stream throughput, the round trip of a 64-byte ping-pong (mean and p99), new
//! connections per second (connect, one small request and reply, close), the CPU time the proxy
//! spends per GB moved and per connection, the system calls it makes per connection
//! ([`syscalls`]), its memory, and optionally its memory while holding many idle connections.
//! Absolute figures depend on the machine; what carries over is the ratios, which is why
//! everything is measured in the same run.

pub(crate) mod hold;
pub mod load;
pub mod report;
mod scale;
pub mod syscalls;
pub mod udp;

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;
use crate::profiles::{self, Profile};
use crate::proxy::{Launch, Limits, ProxyCommand, RunningProxy};
use load::{Behaviour, Server};

/// What to measure and how long.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The proxies: profile names, in the order of the table.
    pub profiles: Vec<String>,
    /// A proxy command of the user's, measured as `yours`.
    pub command: Option<ProxyCommand>,
    /// Length of each measurement.
    pub duration: Duration,
    /// Streams in the N-stream throughput test.
    pub streams: usize,
    /// Clients opening connections at once in the connection-rate test.
    pub workers: usize,
    /// Idle connections to hold through the proxies of `idle_profiles` (0: skip).
    pub idle: usize,
    pub idle_profiles: Vec<String>,
    /// Each measurement is taken this many times, proxies interleaved; the median counts.
    pub rounds: usize,
    /// The scale check instead of the bench: this many connections, all active (capped by the
    /// descriptors), for `scale_secs`.
    pub scale: Option<usize>,
    pub scale_secs: Duration,
    /// Round trips are measured at least this many times (extra rounds of ping-pong only, the
    /// proxies interleaved): they vary most from one measurement to the next.
    pub rtt_rounds: usize,
    pub json: Option<PathBuf>,
    /// UDP forwarders instead ([`udp`]): datagrams, not connections.
    pub udp: bool,
}

/// One proxy's figures (medians over the rounds).
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub name: String,
    pub version: String,
    /// Bytes per second.
    pub one_stream: Option<f64>,
    pub n_streams: Option<f64>,
    /// Seconds.
    pub rtt_mean: Option<f64>,
    pub rtt_p99: Option<f64>,
    /// Connections per second.
    pub conn_rate: Option<f64>,
    /// CPU seconds the proxy used per GB it moved in the throughput tests.
    pub cpu_per_gb: Option<f64>,
    /// CPU seconds the proxy used per connection in the connection-rate test: what decides
    /// the rate when the load generator shares the cores, and what the rate hides when the
    /// machine's limit caps it.
    pub cpu_per_conn: Option<f64>,
    /// System calls per connection, counted one connection at a time ([`syscalls`]).
    pub syscalls: Option<syscalls::Count>,
    /// Resident memory after the throughput tests, all its processes, bytes.
    pub rss: Option<u64>,
    /// Resident memory while holding the idle connections, bytes.
    pub idle_rss: Option<u64>,
    /// Resident memory just before opening them.
    pub idle_base_rss: Option<u64>,
    /// How many idle connections were held (fewer than asked when descriptors are short).
    pub idle_count: Option<usize>,
    /// What went wrong, if a measurement could not be taken.
    pub errors: Vec<String>,
    /// The lowest and highest value of each metric over the rounds, by [`report::Metric`]'s
    /// key: how sure the median is.
    pub spread: std::collections::BTreeMap<&'static str, (f64, f64)>,
}

/// Something to measure: a direct connection or a proxy.
enum Target {
    Direct,
    /// A proxy, and the front its clients must speak, if it is one.
    Proxy(Box<ProxyCommand>, Option<tprox_core::front::Front>),
}

/// Runs the benchmark; `progress` is told each step as it starts.
pub fn run(
    options: &BenchOptions,
    scratch: &std::path::Path,
    progress: &dyn Fn(&str),
) -> Result<Vec<Figures>, String> {
    raise_own_descriptor_limit();
    let targets = targets(options, scratch)?;
    let count_calls = syscalls::unavailable().is_none();
    let runtime = output_runtime().map_err(|e| e.to_string())?;
    let mut rounds: Vec<Vec<Figures>> = Vec::new();
    for round in 0..options.rounds.max(options.rtt_rounds) {
        // Only round trips in the extra rounds.
        let full = round < options.rounds;
        let total = options.rounds.max(options.rtt_rounds);
        let mut figures: Vec<Figures> = targets
            .iter()
            .map(|(name, version, _)| Figures {
                name: name.clone(),
                version: version.clone(),
                ..Figures::default()
            })
            .collect();
        // Each round starts with another proxy, so none is always measured first, on a
        // machine fresh from the previous proxy's stop, or last.
        for i in rotated(targets.len(), round) {
            let (name, _, target) = &targets[i];
            let what = if full { "" } else { " (round trips)" };
            progress(&format!("round {}/{total}: {name}{what}", round + 1));
            if full {
                let first = round == 0;
                measure(
                    &runtime,
                    target,
                    options,
                    first,
                    count_calls,
                    &mut figures[i],
                );
            } else {
                measure_round_trips(&runtime, target, options, &mut figures[i]);
            }
        }
        rounds.push(figures);
    }
    Ok(report::medians(rounds))
}

/// Takes every measurement of one target, recording failures rather than stopping.
fn measure(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    options: &BenchOptions,
    first_round: bool,
    count_calls: bool,
    f: &mut Figures,
) {
    let result = (|| -> Result<(), String> {
        // Throughput, CPU and memory, through a sink.
        let sink = Server::start(Behaviour::Sink).map_err(|e| format!("sink: {e}"))?;
        let instance = Instance::start(runtime, target, sink.addr)?;
        let cpu_before = instance.cpu();
        let moved_before = sink.received.load(std::sync::atomic::Ordering::Relaxed);
        f.one_stream = keep(
            &mut f.errors,
            "1 stream",
            load::throughput(&instance.dial, &sink, 1, options.duration),
        );
        f.n_streams = keep(
            &mut f.errors,
            "N streams",
            load::throughput(&instance.dial, &sink, options.streams, options.duration),
        );
        let moved = sink.received.load(std::sync::atomic::Ordering::Relaxed) - moved_before;
        if let (Some(before), Some(after)) = (cpu_before, instance.cpu()) {
            // Moving data takes CPU: none at all means the proxy's work was not seen (a
            // process outside its group), and is left unmeasured rather than a win.
            if moved > 0 && after > before {
                f.cpu_per_gb = Some((after - before) / (moved as f64 / 1e9));
            }
        }
        f.rss = instance.rss();
        instance.stop(runtime);

        round_trips(runtime, target, options, f)?;

        // Connection rate, through a server that replies once and closes.
        let replier = Server::start(Behaviour::Reply).map_err(|e| format!("reply server: {e}"))?;
        let instance = Instance::start(runtime, target, replier.addr)?;
        let cpu_before = instance.cpu();
        let rate = keep(
            &mut f.errors,
            "connections",
            load::connection_rate(&instance.dial, options.workers, options.duration),
        );
        f.conn_rate = rate.map(|(per_sec, _)| per_sec);
        if let (Some((_, completed)), Some(before), Some(after)) =
            (rate, cpu_before, instance.cpu())
        {
            // As for CPU per GB: none at all is work not seen, not a win.
            if completed > 0 && after > before {
                f.cpu_per_conn = Some((after - before) / completed as f64);
            }
        }
        // Calls last, on the same warm proxy: strace slows it down.
        if let (true, Some(pgid)) = (count_calls, instance.pgid()) {
            f.syscalls = keep(
                &mut f.errors,
                "system calls",
                syscalls::count(pgid, &instance.dial),
            );
        }
        instance.stop(runtime);

        // Memory with many idle connections: once, it does not vary by round.
        if first_round && options.idle > 0 && options.idle_profiles.contains(&f.name) {
            let hold =
                Server::start(Behaviour::Hold).map_err(|e| format!("holding server: {e}"))?;
            let instance = Instance::start(runtime, target, hold.addr)?;
            let limit = Duration::from_secs(30);
            let count = options.idle.min(idle_capacity());
            f.idle_base_rss = instance.rss();
            match load::open_idle(&instance.dial, &hold, count, limit) {
                Ok(streams) => {
                    // Let the proxy settle (lazy allocations, freed dial state).
                    std::thread::sleep(Duration::from_millis(500));
                    f.idle_rss = instance.rss();
                    f.idle_count = Some(count);
                    drop(streams);
                }
                Err(e) => f.errors.push(format!("idle: {e}")),
            }
            instance.stop(runtime);
        }
        Ok(())
    })();
    if let Err(e) = result {
        f.errors.push(e);
    }
}

/// A round of ping-pong only, recording a failure rather than stopping.
fn measure_round_trips(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    options: &BenchOptions,
    f: &mut Figures,
) {
    if let Err(e) = round_trips(runtime, target, options, f) {
        f.errors.push(e);
    }
}

/// Latency, through an echo server.
fn round_trips(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    options: &BenchOptions,
    f: &mut Figures,
) -> Result<(), String> {
    let echo = Server::start(Behaviour::Echo).map_err(|e| format!("echo: {e}"))?;
    let instance = Instance::start(runtime, target, echo.addr)?;
    if let Some(times) = keep(
        &mut f.errors,
        "ping-pong",
        load::ping_pong(&instance.dial, options.duration),
    ) {
        let (mean, p99) = report::mean_and_p99(&times);
        f.rtt_mean = Some(mean);
        f.rtt_p99 = Some(p99);
    }
    instance.stop(runtime);
    Ok(())
}

/// The indices `0..len`, starting at `round % len`.
fn rotated(len: usize, round: usize) -> impl Iterator<Item = usize> {
    (0..len).map(move |i| (i + round) % len.max(1))
}

fn keep<T>(errors: &mut Vec<String>, what: &str, result: std::io::Result<T>) -> Option<T> {
    result.map_err(|e| errors.push(format!("{what}: {e}"))).ok()
}

/// The direct connection, then the profiles' proxies and the user's command, with names and
/// versions, each with a scratch directory of its own under `scratch`.
fn targets(
    options: &BenchOptions,
    scratch: &std::path::Path,
) -> Result<Vec<(String, String, Target)>, String> {
    let mut targets: Vec<(String, String, Target)> =
        vec![("direct".into(), "-".into(), Target::Direct)];
    for name in &options.profiles {
        let profile: &Profile = profiles::find(name)?;
        let dir = scratch.join(name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        targets.push((
            name.clone(),
            profile.version(),
            Target::Proxy(Box::new(profile.command(&dir)?), profile.front()),
        ));
    }
    if let Some(command) = &options.command {
        targets.push((
            "yours".into(),
            command.label.clone(),
            Target::Proxy(Box::new(command.clone()), None),
        ));
    }
    Ok(targets)
}

/// A scratch directory for the proxies' configurations, removed when dropped. The command
/// line makes it and holds it, outside the measuring thread: an interrupt abandons that thread,
/// and the directory must still go.
pub fn scratch_dir(prefix: &str) -> Result<tempfile::TempDir, Error> {
    let scratch = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| Error::Setup(format!("cannot make a scratch directory: {e}")))?;
    // Proxies that drop privileges (nginx workers) must reach their files.
    let _ = std::fs::set_permissions(
        scratch.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    );
    Ok(scratch)
}

/// `tprox bench --scale N`: the scale check through each selected proxy in turn.
fn scale_main(
    options: &BenchOptions,
    count: usize,
    scratch: &std::path::Path,
    progress: &dyn Progress,
) -> Result<Measured, Error> {
    raise_own_descriptor_limit();
    let count = count.min(idle_capacity());
    let targets = targets(options, scratch).map_err(Error::Setup)?;
    // The direct connection first: the load generator's own limit on this machine, which the
    // proxies' round trips are read against.
    progress.start(targets.len() as u64);
    let runtime = output_runtime()?;
    let mut all = Vec::new();
    for (name, _, target) in &targets {
        let f = scale::measure(&runtime, name, target, count, options.scale_secs, &|step| {
            progress.step(step)
        });
        progress.advance();
        progress.measured(&scale::lines(&f, options.scale_secs));
        all.push(f);
    }
    let json = serde_json::json!({
        "settings": {
            "connections": count,
            "secs": options.scale_secs.as_secs_f64(),
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        },
        "scale": all.iter().map(scale::json).collect::<Vec<_>>(),
    });
    Ok(Measured::Scale {
        json,
        complete: all.iter().all(|f| f.error.is_none()),
    })
}

/// The runtime that starts the proxies and drains their output. One worker thread of its own:
/// the draining tasks must keep running while the load generators (plain threads) work. On a
/// current-thread runtime they ran only inside `block_on`, a chatty proxy (a line per
/// connection) filled its pipe during a measurement, and blocked writing its log.
fn output_runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| Error::Setup(format!("cannot start the async runtime: {e}")))
}

/// A started proxy (or none, for a direct connection).
struct Instance {
    addr: std::net::SocketAddr,
    /// How the load reaches the server through it (a front's handshake included).
    dial: load::Dial,
    proxy: Option<RunningProxy>,
}

impl Instance {
    fn start(
        runtime: &tokio::runtime::Runtime,
        target: &Target,
        dest: std::net::SocketAddr,
    ) -> Result<Instance, String> {
        Self::start_as(runtime, target, dest, false)
    }

    /// Starts the target forwarding to `dest`, over UDP when `udp` (ready once its port is
    /// bound).
    fn start_as(
        runtime: &tokio::runtime::Runtime,
        target: &Target,
        dest: std::net::SocketAddr,
        udp: bool,
    ) -> Result<Instance, String> {
        let (command, front) = match target {
            Target::Direct => {
                return Ok(Instance {
                    addr: dest,
                    dial: load::Dial::direct(dest),
                    proxy: None,
                })
            }
            Target::Proxy(command, front) => (command, front),
        };
        let launch = Launch {
            dest_port: dest.port(),
            stall: Duration::from_secs(30),
            startup_timeout: Duration::from_secs(15),
            echo_output: None,
            limits: Limits {
                open_files: descriptor_headroom(),
                ..Limits::default()
            },
            udp,
        };
        let proxy = runtime
            .block_on(RunningProxy::start(command, &launch))
            .map_err(|e| e.to_string())?;
        Ok(Instance {
            addr: proxy.listen,
            dial: load::Dial {
                addr: proxy.listen,
                front: front.clone().map(|front| (front, dest)),
            },
            proxy: Some(proxy),
        })
    }

    /// The proxy's process group (none for a direct connection).
    fn pgid(&self) -> Option<i32> {
        self.proxy.as_ref().map(RunningProxy::pgid)
    }

    fn cpu(&self) -> Option<f64> {
        self.proxy.as_ref().map(|p| group_usage(p.pgid()).0)
    }

    fn rss(&self) -> Option<u64> {
        self.proxy.as_ref().map(|p| group_usage(p.pgid()).1)
    }

    fn stop(self, runtime: &tokio::runtime::Runtime) {
        if let Some(proxy) = self.proxy {
            runtime.block_on(proxy.stop());
            // A proxy that forks a child per connection and never reaps it (redir) leaves its
            // zombies to tprox, the subreaper, once it is stopped. They are reaped now, not when
            // the bench ends: five rounds of redir's connection test leave more of them than
            // the system has process ids (32,768 by default), and every proxy measured after
            // that could start no thread.
            crate::proxy::sweep_orphans();
        }
    }
}

/// CPU seconds (user and system, its reaped children and its unreaped zombies included) and
/// resident bytes of every process in a group: nginx's workers, socat's per-connection
/// children and redir's (which tprox reaps) count.
fn group_usage(pgid: i32) -> (f64, u64) {
    let processes = tprox_core::probe::group(pgid).unwrap_or_default();
    let cpu = processes
        .iter()
        .map(|p| p.cpu + p.children_cpu)
        .sum::<Duration>();
    (cpu.as_secs_f64(), processes.iter().map(|p| p.rss).sum())
}

/// Descriptors a proxy (and tprox) may open: enough for the idle test where the system allows.
const WANTED_DESCRIPTORS: u64 = 65_536;

/// Idle connections that fit the descriptor limit: both tprox and the proxy hold two
/// descriptors per connection (a client end and a server end; the proxy's two sockets), and
/// each needs a few dozen of its own besides.
fn idle_capacity() -> usize {
    use nix::sys::resource::{getrlimit, Resource};
    let soft = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    (soft.saturating_sub(100) / 2) as usize
}

fn descriptor_headroom() -> Option<u64> {
    use nix::sys::resource::{getrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    Some(hard.max(1024))
}

/// Raises tprox's own limit: the idle test holds two descriptors per connection here too.
fn raise_own_descriptor_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    // Raising the hard limit needs privilege; without it, take what the hard limit gives.
    if setrlimit(
        Resource::RLIMIT_NOFILE,
        WANTED_DESCRIPTORS,
        WANTED_DESCRIPTORS.max(hard),
    )
    .is_err()
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// What `tprox bench` measured, for the command line to print and write.
pub enum Measured {
    /// Proxies side by side: the table for people and the JSON report (`--json`).
    Table {
        text: String,
        json: serde_json::Value,
    },
    /// The scale check: each proxy's lines went out through [`Progress::measured`] as it
    /// finished; the JSON report, and whether every proxy could be measured.
    Scale {
        json: serde_json::Value,
        complete: bool,
    },
}

/// What a measurement tells as it goes (the command line shows it).
pub trait Progress: Sync {
    /// The number of steps to come.
    fn start(&self, steps: u64);
    /// A step began (a round of one proxy, a stage of the scale check).
    fn step(&self, what: &str);
    /// One of the steps counted in `start` is done.
    fn advance(&self);
    /// The scale check's lines for one proxy, once it is measured.
    fn measured(&self, lines: &str);
}

/// `tprox bench`: checks the selection and measures it.
/// `scratch` is where the proxies' configurations go ([`scratch_dir`]).
pub fn main(
    mut options: BenchOptions,
    scratch: &std::path::Path,
    progress: &dyn Progress,
) -> Result<Measured, Error> {
    if options.udp {
        return udp::main(options, scratch, progress);
    }
    if options.profiles.is_empty() && options.scale.is_some() {
        // A minute or more per proxy: only the reference unless others are asked for.
        options.profiles = vec!["ref".into()];
    }
    if options.profiles.is_empty() {
        // A proxy that sends the PROXY protocol would send its header to the bench's servers,
        // which do not read one: it is the same forwarder as its plain profile. A UDP
        // forwarder has no connections to measure.
        options.profiles = profiles::PROFILES
            .iter()
            .filter(|p| p.program().is_ok() && p.proxy_protocol.is_none() && !p.udp)
            .map(|p| p.name.to_string())
            .collect();
    }
    for name in &options.profiles {
        let profile = profiles::find(name).map_err(Error::Setup)?;
        profile.program().map_err(Error::Setup)?;
        if profile.udp {
            return Err(Error::Usage(format!(
                "--profiles {name}: {name} forwards UDP, and tprox bench measures TCP \
                 forwarding; measure it with tprox --profile {name}"
            )));
        }
        if let Some(mode) = profile.proxy_protocol {
            return Err(Error::Usage(format!(
                "--profiles {name}: {name} sends PROXY protocol headers ({mode}), which the \
                 bench's servers do not read; measure the plain profile instead"
            )));
        }
    }
    if let Some(count) = options.scale {
        return scale_main(&options, count, scratch, progress);
    }
    let targets = options.profiles.len() + 1 + usize::from(options.command.is_some());
    progress.start((targets * options.rounds.max(options.rtt_rounds)) as u64);
    let figures = run(&options, scratch, &|step| {
        progress.advance();
        progress.step(step)
    })
    .map_err(Error::Setup)?;
    let mut settings = format!(
        "tprox bench: {} s per measurement, {} round(s), round trips in {}, {} streams, {} connection workers, {} cores",
        options.duration.as_secs_f64(),
        options.rounds,
        options.rounds.max(options.rtt_rounds),
        options.streams,
        options.workers,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let uncounted = syscalls::unavailable();
    if let Some(why) = &uncounted {
        settings = format!("{settings}\n{why}");
    }
    let json_settings = serde_json::json!({
        "duration_secs": options.duration.as_secs_f64(),
        "rounds": options.rounds,
        "rtt_rounds": options.rounds.max(options.rtt_rounds),
        "streams": options.streams,
        "workers": options.workers,
        "idle_connections": options.idle,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "syscalls_not_counted": uncounted,
    });
    Ok(Measured::Table {
        text: report::table(&figures, "ref", &settings),
        json: report::json(&figures, "ref", json_settings),
    })
}

/// `tprox bench --markdown-from FILE [--update PAGE]`: the figures of a saved `--json` report
/// as Markdown, printed or written into PAGE between its markers, so that a page's table is
/// made from a measurement by a command, never by hand. Returns the Markdown when it is to be
/// printed (no PAGE).
pub fn markdown_main(
    report: &std::path::Path,
    page: Option<&std::path::Path>,
) -> Result<Option<String>, Error> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map_err(|e| Error::Usage(format!("cannot read {}: {e}", path.display())))
    };
    let text = read(report)?;
    let bad = |why: String| {
        Error::Usage(format!(
            "{} is not a report of `tprox bench --json`: {why}",
            report.display()
        ))
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let file = report.file_name().unwrap_or_default().to_string_lossy();
    let (generated, markers) = if udp::is_udp_report(&value) {
        (
            udp::markdown_from(&value, &file).map_err(bad)?,
            (report::UDP_MARKDOWN_BEGIN, report::UDP_MARKDOWN_END),
        )
    } else {
        let figures = report::from_json(&value).map_err(bad)?;
        let settings = &value["settings"];
        let number = |key: &str| settings[key].as_f64().unwrap_or(f64::NAN);
        let line = format!(
            "`tprox bench` on {} cores: {} s per measurement, {} round(s), round trips in {}, {} \
             streams, {} connection workers ({file}).",
            number("cores"),
            number("duration_secs"),
            number("rounds"),
            number("rtt_rounds"),
            number("streams"),
            number("workers"),
        );
        let subject = value["subject"].as_str().unwrap_or("ref");
        (
            report::markdown(&figures, subject, &line),
            (report::MARKDOWN_BEGIN, report::MARKDOWN_END),
        )
    };
    let Some(page) = page else {
        return Ok(Some(generated));
    };
    let updated = report::replace_generated(&read(page)?, markers, &generated)
        .map_err(|why| Error::Usage(format!("cannot update {}: {why}", page.display())))?;
    std::fs::write(page, updated).map_err(|e| Error::output("the page", page, e))?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_round_starts_with_the_next_proxy_and_measures_each_once() {
        assert_eq!(super::rotated(3, 0).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(super::rotated(3, 1).collect::<Vec<_>>(), [1, 2, 0]);
        assert_eq!(super::rotated(3, 5).collect::<Vec<_>>(), [2, 0, 1]);
    }
}
