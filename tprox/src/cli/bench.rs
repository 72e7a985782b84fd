//! `tprox bench`: proxies measured side by side (the work is in [`crate::bench`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::bench::{Measured, Progress};
use crate::proxy::ProxyCommand;

const BENCH_EXAMPLES: &str = "\
Examples:
  tprox bench                                     the reference against every installed proxy
  tprox bench --profiles ref,haproxy,nginx --duration 3 --rounds 3 --json bench.json
  tprox bench --profiles ref,socat -- ./myproxy {dest_host} {dest_port} {listen_port}
  tprox bench --markdown-from docs/bench.json --update docs/bench.md   the page's table, remade
  tprox bench --scale 10000 --scale-secs 60       every connection the descriptors allow, all busy
  tprox bench --udp --rounds 3                    the UDP forwarders: ref-udp, socat-udp, nginx-udp...

Each proxy is started with a generated configuration (tprox --list-profiles shows them) and
measured in turn, all in one run: throughput of one stream and of N streams into a sink,
64-byte ping-pong round trips (mean and 99th percentile), complete connections per second
(connect, 64-byte request and reply, close), and the CPU time and memory of all the proxy's
processes: CPU time per GB moved and per connection. Then, outside the timed runs, 500
connections one at a time under strace (or as many as go through in 20 s, for a proxy that
takes long per connection) give each proxy's system calls per connection, overall and by call
(strace must be installed; Debian package strace). A direct connection to the
same servers is the limit of the machine; for connections, half the direct rate is (a proxied
connection is two TCP connections). The table ends with the reference's ratios to the best
other proxy for each figure. With --udp, UDP forwarders are measured instead, per datagram.

Absolute figures depend on the machine and its load; compare ratios from one run.";

/// Benchmark proxies side by side.
#[derive(Debug, clap::Args)]
#[command(after_help = BENCH_EXAMPLES)]
pub(super) struct BenchArgs {
    /// A proxy command of yours to measure too, as for the main run.
    #[arg(value_name = "PROXY", trailing_var_arg = true)]
    proxy: Vec<String>,

    /// Profiles to measure, comma-separated [default: ref, ref-buffered and every installed
    /// proxy].
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    profiles: Vec<String>,

    /// Seconds each measurement runs.
    #[arg(long, value_name = "SECS", default_value_t = 2.0, value_parser = positive_seconds, allow_negative_numbers = true)]
    duration: f64,

    /// Measure everything this many times, proxies interleaved, and keep the medians.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,

    /// Measure round trips at least this many times (the extra rounds measure nothing else,
    /// proxies interleaved): a round trip's mean moves most from one measurement to the next.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    rtt_rounds: u32,

    /// Instead of the bench, the scale check: N connections (at most what the descriptor limit
    /// allows) through each proxy of --profiles (default: ref), all active at once, each sending
    /// a 16-byte message a second for --scale-secs; reports failed messages, starved
    /// connections, the worst round trip and the proxy's memory over time.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    scale: Option<u32>,

    /// With --scale: how long the load goes on.
    #[arg(long, value_name = "SECS", default_value_t = 60, requires = "scale", value_parser = clap::value_parser!(u32).range(1..=3600))]
    scale_secs: u32,

    /// Streams at once in the N-stream throughput test.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    streams: u32,

    /// Clients at once in the connection-rate test.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    workers: u32,

    /// Idle connections to hold through the proxies of --idle-profiles, measuring their memory
    /// (0 skips it).
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    idle: u32,

    /// Proxies whose memory is measured with idle connections.
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        default_value = "ref"
    )]
    idle_profiles: Vec<String>,

    /// Measure UDP forwarders instead [default profiles: every installed UDP one]: 64-byte
    /// datagrams echoed through each, 4 clients keeping 16 in flight, for round trips per
    /// second, CPU time per million datagrams and lost datagrams; then one client, one datagram
    /// at a time, for the round trip.
    #[arg(long, conflicts_with_all = ["scale", "hold", "markdown_from"])]
    udp: bool,

    /// Also write the figures and ratios as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,

    /// Measure nothing: print the figures of a saved --json report as Markdown (a table and the
    /// ratio lines).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["proxy", "profiles", "json"])]
    markdown_from: Option<PathBuf>,

    /// Measure nothing: start the proxy of profile NAME forwarding to 127.0.0.1:--dest, print
    /// `Listening on ADDR:PORT`, and stop it when stdin closes; for measuring the proxies with
    /// other tools (ci/cross-check).
    #[arg(long, value_name = "NAME", requires = "dest", conflicts_with_all = ["proxy", "profiles", "json", "markdown_from"])]
    hold: Option<String>,

    /// With --hold: the port on 127.0.0.1 that the proxy forwards to.
    #[arg(long, value_name = "PORT", requires = "hold", value_parser = clap::value_parser!(u16).range(1..))]
    dest: Option<u16>,

    /// With --markdown-from: write the Markdown into PAGE instead, replacing what lies between
    /// its `<!-- tprox bench: ... -->` markers (docs/bench.md has them).
    #[arg(long, value_name = "PAGE", requires = "markdown_from")]
    update: Option<PathBuf>,
}

pub(super) fn run(args: BenchArgs) -> error::Result {
    if let (Some(name), Some(port)) = (args.hold.clone(), args.dest) {
        return run_blocking_interruptible("tprox bench", "", move || {
            crate::bench::hold::main(&name, port)
        })?;
    }
    if let Some(report) = &args.markdown_from {
        match crate::bench::markdown_main(report, args.update.as_deref())? {
            Some(markdown) => print!("{markdown}"),
            None => eprintln!(
                "tprox bench: {} updated from {}",
                args.update.as_deref().unwrap_or(Path::new("")).display(),
                report.display()
            ),
        }
        return Ok(Conclusion::Passed);
    }
    let command = match args.proxy.is_empty() {
        true => None,
        false => match ProxyCommand::new(&args.proxy) {
            Ok(command) => Some(command),
            Err(message) => return Err(Error::Usage(message)),
        },
    };
    let options = crate::bench::BenchOptions {
        profiles: args.profiles,
        command,
        duration: Duration::from_secs_f64(args.duration),
        streams: args.streams as usize,
        workers: args.workers as usize,
        idle: args.idle as usize,
        idle_profiles: args.idle_profiles,
        rounds: args.rounds as usize,
        rtt_rounds: args.rtt_rounds as usize,
        scale: args.scale.map(|n| n as usize),
        scale_secs: Duration::from_secs(args.scale_secs.into()),
        json: args.json,
        udp: args.udp,
    };
    let json = options.json.clone();
    // Held here, so that it is removed also when an interrupt abandons the measuring thread.
    let scratch = crate::bench::scratch_dir("tprox-bench-")?;
    let path = scratch.path().to_path_buf();
    let measured = run_blocking_interruptible("tprox bench", "; no figures written", move || {
        crate::bench::main(options, &path, &Bar::default())
    })??;
    let (report, conclusion) = match measured {
        Measured::Table { text, json } => {
            print!("{text}");
            (json, Ok(Conclusion::Passed))
        }
        Measured::Scale { json, complete } => (
            json,
            match complete {
                true => Ok(Conclusion::Passed),
                false => Err(Error::Setup(
                    "the scale check could not run through every proxy (see above)".into(),
                )),
            },
        ),
    };
    if let Some(path) = &json {
        let text = serde_json::to_string_pretty(&report).unwrap_or_default();
        std::fs::write(path, text + "\n").map_err(|e| Error::output("the figures", path, e))?;
    }
    conclusion
}

/// The progress line of a measurement, on stderr where a person watches; the scale check's
/// lines printed above it as each proxy is done.
#[derive(Default)]
struct Bar(std::sync::OnceLock<indicatif::ProgressBar>);

impl Bar {
    fn bar(&self) -> &indicatif::ProgressBar {
        self.0.get_or_init(indicatif::ProgressBar::hidden)
    }
}

impl Progress for Bar {
    fn start(&self, steps: u64) {
        let bar = crate::progress::bar(steps, "{bar:30} {pos}/{len} {msg} [{elapsed}]")
            .unwrap_or_else(indicatif::ProgressBar::hidden);
        bar.enable_steady_tick(Duration::from_millis(200));
        let _ = self.0.set(bar);
    }

    fn step(&self, what: &str) {
        self.bar().set_message(what.to_string());
    }

    fn advance(&self) {
        self.bar().inc(1);
    }

    fn measured(&self, lines: &str) {
        self.bar().suspend(|| print!("{lines}"));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = self.0.get() {
            bar.finish_and_clear();
        }
    }
}
