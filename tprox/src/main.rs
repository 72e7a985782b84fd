//! The `tprox` command: parses the command line and dispatches to the library.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;

use tprox::formats::{self, Format, RunInfo};
use tprox::fuzz;
use tprox::grade::{self, config::Grading, gradebook::Gradebook, GradeOptions, Partition};
use tprox::harness::Scale;
use tprox::proxy::{self, ProxyCommand, REFERENCE_ARG};
use tprox::report::{HumanReporter, Summary};
use tprox::runner::{self, RunOptions};
use tprox::select::{self, Pattern};
use tprox::{exit, rules, CATALOGUE};

const EXAMPLES: &str = "\
Examples:
  tprox --reference                       test the reference proxy built into tprox
  tprox ./tcpproxy                        runs ./tcpproxy 127.0.0.1 DEST_PORT LISTEN_PORT
  tprox -- socat TCP-LISTEN:{listen_port},reuseaddr,fork TCP:{dest_host}:{dest_port}
  tprox --only shutdown/ --only 'timeout/*' ./tcpproxy
  tprox --stall-timeout 2 -- ./myproxy --timeout {stall_timeout} {dest_host} {dest_port} {listen_port}
  tprox grade grading.toml submissions/*  grade a class of proxies (see tprox grade --help)
  tprox fuzz --reference                  generated scenarios, shrunk on failure (tprox fuzz --help)

Exit status:
  0  every selected case passed
  1  at least one case failed
  2  bad usage, or the proxy could not be started (it exited, or never listened)
  3  the filters selected no case
  130 interrupted; every proxy tprox started was stopped";

/// Conformance tests for TCP proxies.
///
/// tprox starts the proxy under test, plays both the client and the destination server, and
/// runs each case of the TCP proxy contract against it: echo through chains of connections,
/// bulk data, blocked peers, half-close, early close, stall timeouts. Every case gets a fresh
/// proxy instance; cases run in parallel.
///
/// PROXY is started as `PROXY [ARGS]... DEST_HOST DEST_PORT LISTEN_PORT`, like the original
/// lab tester, unless an argument contains a placeholder: then `{dest_host}`, `{dest_port}`,
/// `{listen_port}` and `{stall_timeout}` are substituted wherever they appear and nothing is
/// appended.
#[derive(Debug, Parser)]
#[command(
    name = "tprox",
    version,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_value_name = "COMMAND",
    subcommand_help_heading = "Other commands"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// The proxy program and its arguments (put `--` before it if it has options of its own).
    #[arg(value_name = "PROXY", trailing_var_arg = true)]
    proxy: Vec<String>,

    /// Test the reference proxy that ships with tprox instead of a program of yours.
    #[arg(long, conflicts_with = "proxy")]
    reference: bool,

    /// Test a known proxy (socat, haproxy, nginx, rinetd, redir, tcpproxy, ref), started with a
    /// generated configuration; see --list-profiles.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["proxy", "reference"])]
    profile: Option<String>,

    /// List the known proxies: whether each is installed, its version, how it is run, and
    /// where its behaviour differs from the contract's; then exit.
    #[arg(long)]
    list_profiles: bool,

    /// List the cases (id, rules, level, name) and exit.
    #[arg(long)]
    list: bool,

    /// Print each rule of the contract with the cases that check it, and exit.
    #[arg(long)]
    rules: bool,

    /// Run only cases whose id starts with PATTERN, or matches it as a glob (repeatable).
    #[arg(long, value_name = "PATTERN")]
    only: Vec<String>,

    /// Leave out cases whose id starts with PATTERN, or matches it as a glob (repeatable).
    #[arg(long, value_name = "PATTERN")]
    skip: Vec<String>,

    /// The stall timeout the proxy uses, in seconds (what the timeout cases expect).
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = positive_seconds, allow_negative_numbers = true)]
    stall_timeout: f64,

    /// How many cases run at once. Cases mostly wait, so this may exceed the cores.
    #[arg(long, short = 'j', value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,

    /// How long the proxy may take to start listening, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = positive_seconds, allow_negative_numbers = true)]
    startup_timeout: f64,

    /// Run every case against one proxy instance, in sequence, like the original tester: state
    /// that leaks from one case into the next then shows up.
    #[arg(long)]
    shared: bool,

    /// Count failed SHOULD cases (low latency, R12) as failures, not warnings.
    #[arg(long)]
    strict: bool,

    /// Connections open at once in concurrency/many. Each needs two descriptors in tprox and
    /// two in the proxy: mind the open-file limit (ulimit -n).
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=20000))]
    connections: u32,

    /// Size of the bulk transfer through the chain of connections, in KiB (the original: 2048).
    #[arg(long, value_name = "KIB", default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..=1048576))]
    bulk_kib: u32,

    /// Format of the report on stdout: human, json, junit or tap.
    #[arg(long, value_name = "FORMAT", default_value = "human", value_parser = parse_format)]
    format: Format,

    /// Also write a report to FILE (repeatable). The format comes from FORMAT: or from the
    /// extension: --output results.xml (JUnit), --output report.json, --output tap:out.txt.
    #[arg(long, value_name = "[FORMAT:]FILE", value_parser = Format::parse_output)]
    output: Vec<(Format, PathBuf)>,

    /// Try a failed case up to N more times, each with a fresh proxy. A case that fails and then
    /// passes is reported as flaky: shown as such, but it does not fail the run.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    retries: u32,

    /// Run the selection N times and report each case's failure rate; run i uses seed + i - 1.
    /// Reports written with --output describe the last run.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeat: u32,

    /// Seed for every random payload; printed with each run, so a failure can be replayed.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,

    /// Show each case's trace and the proxy's output as it runs.
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Grade a class: build and test every submission directory, write a gradebook
    /// (see tprox grade --help).
    Grade(GradeArgs),
    /// Play generated scenarios against a proxy and shrink the first failure to a minimal one
    /// (see tprox fuzz --help).
    Fuzz(FuzzArgs),
    /// Measure proxies side by side, and a direct connection, under the same load
    /// (see tprox bench --help).
    Bench(BenchArgs),
    /// Play one side of a connection by hand, netcat-style: echo, sink, source, greet, refuse,
    /// reset (see tprox peer --help).
    Peer(PeerArgs),
}

const PEER_EXAMPLES: &str = "\
Examples, to debug a proxy that forwards :8080 to :9000:
  tprox peer echo --listen 9000                  the destination echoes (IPv4 and IPv6 loopback)
  tprox peer source --connect 127.0.0.1:8080x10 --bytes 1000000
                                                 ten clients send 1 MB each, then shut down
  tprox peer greet --listen 9000 --greeting 'HELLO' a destination that speaks first
  tprox peer sink --listen 9000 --stop-reading-after 100000
                                                 stops reading: does the proxy stop too?
  tprox peer refuse --listen 9000                connections to 9000 are refused
  tprox peer reset --listen 9000 --reset-after 10   resets each connection after 10 bytes

Each connection's bytes received and sent are printed when it ends, the totals when the peer
stops. A listening peer runs until Ctrl-C; a connecting one until all its connections end.";

/// Play one side of a connection by hand.
#[derive(Debug, clap::Args)]
#[command(after_help = PEER_EXAMPLES)]
struct PeerArgs {
    /// What to do with each connection.
    #[arg(value_enum)]
    mode: tprox::peer::Mode,

    /// Listen on [ADDR:]PORT (a bare port: IPv4 and IPv6 loopback).
    #[arg(
        long,
        value_name = "[ADDR:]PORT",
        conflicts_with = "connect",
        required_unless_present = "connect"
    )]
    listen: Option<String>,

    /// Connect to HOST:PORT, N times at once with xN (127.0.0.1:8080x10).
    #[arg(long, value_name = "HOST:PORT[xN]", value_parser = tprox::peer::parse_connect)]
    connect: Option<(String, usize)>,

    /// Source: how many bytes each connection sends.
    #[arg(long, value_name = "N", default_value_t = 1 << 20)]
    bytes: u64,

    /// Source: bytes per second per connection [default: as fast as possible].
    #[arg(long, value_name = "BYTES_PER_SEC", value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,

    /// Source: send this byte (0-255) over and over instead of random bytes.
    #[arg(long, value_name = "BYTE")]
    fixed: Option<u8>,

    /// Greet: what to send first.
    #[arg(long, value_name = "TEXT", default_value = "hello from tprox peer\r\n")]
    greeting: String,

    /// Stop reading after N bytes received, and stay connected.
    #[arg(long, value_name = "N")]
    stop_reading_after: Option<u64>,

    /// Close the connection after N bytes received.
    #[arg(long, value_name = "N")]
    close_after: Option<u64>,

    /// Reset the connection after N bytes received (reset mode: 0 by default).
    #[arg(long, value_name = "N")]
    reset_after: Option<u64>,
}

const BENCH_EXAMPLES: &str = "\
Examples:
  tprox bench                                     the reference against every installed proxy
  tprox bench --profiles ref,haproxy,nginx --duration 3 --rounds 3 --json bench.json
  tprox bench --profiles ref,socat -- ./myproxy {dest_host} {dest_port} {listen_port}

Each proxy is started with a generated configuration (tprox --list-profiles shows them) and
measured in turn, all in one run: throughput of one stream and of N streams into a sink,
64-byte ping-pong round trips (mean and 99th percentile), complete connections per second
(connect, 64-byte request and reply, close), and the CPU time and memory of all the proxy's
processes. A direct connection to the same servers is the limit of the machine. The table
ends with the reference's ratios to the best other proxy for each figure.

Absolute figures depend on the machine and its load; compare ratios from one run.";

/// Benchmark proxies side by side.
#[derive(Debug, clap::Args)]
#[command(after_help = BENCH_EXAMPLES)]
struct BenchArgs {
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

    /// Also write the figures and ratios as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

const FUZZ_EXAMPLES: &str = "\
Examples:
  tprox fuzz --reference                          200 scenarios against the reference proxy
  tprox fuzz --stall-timeout 2 ./tcpproxy          classic style, as in the main run
  tprox fuzz --cases 1000 --seed 7 -- python3 proxy.py {dest_host} {dest_port} {listen_port}
  tprox fuzz --replay tprox-fuzz-failure.json ./tcpproxy     play a saved scenario again

A scenario is a short program for both peers of up to three connections: writes of random
sizes (1 byte to several MiB) from either side, pauses, reads that stop, resume or trickle,
half-closes from either side in either order, and resets. The contract is the oracle: each
side receives exactly what the other wrote (R1), a shutdown arrives as EOF after all the data
while the other direction stays open (R5), a reset closes the other side promptly (R6), and
nothing else is closed (R7: a scenario's pauses stay far below the stall timeout).

On the first failure, the scenario is shrunk (fewer steps, smaller writes) to a minimal one
that still fails, printed as steps, saved as JSON (--save), and the command that replays it
is printed. Every run prints its seed: the same seed generates the same scenarios.

Exit status: 0 every scenario passed, 1 a scenario failed, 2 bad usage or the proxy could not
be started, 130 interrupted.";

/// Fuzz a proxy with generated scenarios, judged by the contract.
#[derive(Debug, clap::Args)]
#[command(after_help = FUZZ_EXAMPLES)]
struct FuzzArgs {
    /// The proxy program and its arguments, as for the main run (put `--` before it if it
    /// has options of its own).
    #[arg(value_name = "PROXY", trailing_var_arg = true)]
    proxy: Vec<String>,

    /// Fuzz the reference proxy that ships with tprox.
    #[arg(long, conflicts_with = "proxy")]
    reference: bool,

    /// Scenarios to generate.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    cases: u32,

    /// Seed for the scenario generator [default: random, and printed].
    #[arg(long, value_name = "N")]
    seed: Option<u64>,

    /// How long shrinking a failure may take, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60.0, value_parser = positive_seconds, allow_negative_numbers = true)]
    max_shrink_time: f64,

    /// A fresh proxy for every scenario (failures replay alone), or one shared by all
    /// (faster; also finds bugs that need state left by earlier connections).
    #[arg(long, value_name = "MODE", default_value = "fresh", value_parser = ["fresh", "shared"])]
    instance: String,

    /// The stall timeout the proxy uses, in seconds; also passed as {stall_timeout}.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = positive_seconds, allow_negative_numbers = true)]
    stall_timeout: f64,

    /// How long the proxy may take to start listening, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = positive_seconds, allow_negative_numbers = true)]
    startup_timeout: f64,

    /// Play the scenario saved in FILE (by an earlier failure) instead of generating any.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,

    /// Where to save the minimal failing scenario.
    #[arg(long, value_name = "FILE", default_value = "tprox-fuzz-failure.json")]
    save: PathBuf,

    /// Keep proptest's seeds of failing scenarios in FILE, and try them first in later runs.
    #[arg(long, value_name = "FILE")]
    persist: Option<PathBuf>,
}

const GRADE_EXAMPLES: &str = "\
Examples:
  tprox grade grading.toml submissions/*              writes grades/gradebook.{html,csv,json}
  tprox grade grading.toml submissions/* --partition 2/4 --out grades-2
  tprox grade merge --out grades grades-*/gradebook.json

The grading file (TOML) says how to build and start a submission and what each case is worth:

  [build]                      # optional; run with sh -c in a scratch copy of the submission
  command = \"make\"
  timeout = \"5m\"
  [run]
  start = \"./tcpproxy {dest_host} {dest_port} {listen_port}\"   # also {submission}, {scratch}
  stall_timeout = \"2s\"       # what the submissions were told to use
  time_limit = \"3m\"          # wall clock for all of one submission's cases
  jobs = 8                     # cases of one submission at once; also seed, retries
  [limits]                     # for every proxy process
  address_space_mib = 4096
  open_files = 1024
  cpu_seconds = 120
  [points]                     # points per case: the longest matching pattern wins;
  \"*\" = 1                      # cases no pattern matches are not run
  \"shutdown/\" = 3

Each submission is copied to a scratch directory and built and run there (its own directory
is never written to), its proxies in process groups of their own under the limits above;
whatever a submission starts is stopped when it is done. A submission that does not build,
crashes, hangs, forks or floods its output scores what it scores and disturbs no other.

Exit status: 0 the gradebook was written (whatever the scores), 2 bad usage or grading file,
130 interrupted.";

/// Grade many proxy submissions against the catalogue.
#[derive(Debug, clap::Args)]
#[command(
    after_help = GRADE_EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_value_name = "COMMAND",
    subcommand_help_heading = "Other commands"
)]
struct GradeArgs {
    #[command(subcommand)]
    command: Option<GradeCommand>,

    /// The grading file (TOML; see below).
    #[arg(value_name = "GRADING_FILE", required = true)]
    grading_file: Option<PathBuf>,

    /// The submission directories, one per student or team; each is graded under its own
    /// directory name.
    #[arg(value_name = "SUBMISSION", required = true)]
    submissions: Vec<PathBuf>,

    /// Where to write gradebook.{json,csv,html} and each submission's logs.
    #[arg(long, value_name = "DIR", default_value = "grades")]
    out: PathBuf,

    /// Submissions graded at once [default: the number of CPUs]. Each submission's cases also
    /// run in parallel ([run] jobs in the grading file).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,

    /// Grade only the K-th of N equal shares (sorted by name), for splitting a large class
    /// across machines; merge the gradebooks with tprox grade merge.
    #[arg(long, value_name = "K/N", value_parser = Partition::parse)]
    partition: Option<Partition>,

    /// Keep each submission's scratch copy (under DIR/scratch) after grading.
    #[arg(long)]
    keep_scratch: bool,
}

#[derive(Debug, clap::Subcommand)]
enum GradeCommand {
    /// Merge the gradebooks of partitions (gradebook.json files) into one.
    Merge {
        /// Where to write the merged gradebook.{json,csv,html}.
        #[arg(long, value_name = "DIR", default_value = "grades")]
        out: PathBuf,

        /// The partial gradebooks (each a gradebook.json).
        #[arg(value_name = "GRADEBOOK", required = true)]
        gradebooks: Vec<PathBuf>,
    },
}

fn parse_format(text: &str) -> Result<Format, String> {
    Format::parse(text)
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs.is_finite() && secs <= 3600.0 => Ok(secs),
        _ => Err("expected a number of seconds between 0 and 3600, such as 10 or 2.5".into()),
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|first| first == REFERENCE_ARG) {
        // tprox is re-running itself as the reference proxy (see `ProxyCommand::reference`).
        return tcpproxy::cli::main_with_args(std::iter::once("tcpproxy".into()).chain(args));
    }
    let cli = Cli::parse();
    ExitCode::from(dispatch(cli))
}

fn dispatch(cli: Cli) -> u8 {
    match cli.command {
        Some(Command::Grade(args)) => return grade_command(args),
        Some(Command::Fuzz(args)) => return fuzz_command(args),
        Some(Command::Bench(args)) => return bench_command(args),
        Some(Command::Peer(args)) => return peer_command(args),
        None => {}
    }
    if cli.list {
        list();
        return exit::PASSED;
    }
    if cli.list_profiles {
        say(format_args!("{}", tprox::profiles::describe_all()));
        return exit::PASSED;
    }
    if cli.rules {
        print_rules();
        return exit::PASSED;
    }
    // A profile's configuration is written to a scratch directory that lives as long as the run.
    let mut _scratch = None;
    let proxy = match (&cli.profile, cli.reference, cli.proxy.is_empty()) {
        (Some(name), _, _) => {
            let profile = match tprox::profiles::find(name) {
                Ok(profile) => profile,
                Err(message) => return usage_error(&message),
            };
            let scratch = match tprox::profiles::scratch_dir() {
                Ok(dir) => dir,
                Err(message) => return usage_error(&message),
            };
            let command = profile.command(scratch.path());
            _scratch = Some(scratch);
            command
        }
        (None, true, _) => ProxyCommand::reference(),
        (None, false, false) => ProxyCommand::new(&cli.proxy),
        (None, false, true) => Err(
            "no proxy to test: give the proxy command (tprox ./tcpproxy), --reference for the \
             built-in reference proxy, or --profile NAME; see tprox --help"
                .into(),
        ),
    };
    let proxy = match proxy {
        Ok(proxy) => proxy,
        Err(message) => return usage_error(&message),
    };
    let parse = |patterns: &[String]| {
        patterns
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<Vec<_>, _>>()
    };
    let (only, skip) = match (parse(&cli.only), parse(&cli.skip)) {
        (Ok(only), Ok(skip)) => (only, skip),
        (Err(message), _) | (_, Err(message)) => return usage_error(&message),
    };
    let (cases, unmatched) = select::select(CATALOGUE, &only, &skip);
    for pattern in &unmatched {
        eprintln!("tprox: warning: pattern '{pattern}' matches no case (see tprox --list)");
    }
    if cases.is_empty() {
        eprintln!("tprox: no case selected; see tprox --list for the case ids");
        return exit::NOTHING_SELECTED;
    }
    let seed = cli.seed.unwrap_or_else(|| fastrand::u64(..1_000_000_000));
    let options = RunOptions {
        startup_timeout: Duration::from_secs_f64(cli.startup_timeout),
        jobs: cli.jobs.into(),
        seed,
        scale: Scale {
            connections: cli.connections as usize,
            bulk_bytes: cli.bulk_kib as usize * 1024,
            ..Scale::default()
        },
        echo_proxy_output: cli.verbose,
        shared: cli.shared,
        retries: cli.retries,
        ..RunOptions::new(proxy, Duration::from_secs_f64(cli.stall_timeout))
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tprox: cannot start the async runtime: {e}");
            return exit::SETUP;
        }
    };
    // A daemon that a proxy leaves behind is re-parented to tprox and stopped at the end.
    proxy::become_subreaper();
    let code = runtime.block_on(async {
        tokio::select! {
            code = run_repeatedly(&cases, &options, &cli) => code,
            signal = interrupted() => {
                proxy::kill_all();
                eprintln!("\ntprox: interrupted by {signal}; every proxy tprox started has been stopped");
                exit::INTERRUPTED
            }
        }
    });
    // Dropping the runtime drops any case still running, and with it its proxy.
    drop(runtime);
    proxy::sweep_orphans();
    code
}

fn peer_command(args: PeerArgs) -> u8 {
    use tprox::peer::{Mode, PeerOptions, Place};
    let place = match (args.listen, args.connect) {
        (Some(text), _) => match tprox::peer::parse_listen(&text) {
            Ok(addrs) => Place::Listen(addrs),
            Err(message) => return usage_error(&message),
        },
        (None, Some((target, count))) => Place::Connect(target, count),
        (None, None) => return usage_error("give --listen [ADDR:]PORT or --connect HOST:PORT[xN]"),
    };
    if args.mode == Mode::Refuse && matches!(place, Place::Connect(..)) {
        return usage_error("refuse is for a listening peer: tprox peer refuse --listen PORT");
    }
    tprox::peer::main(PeerOptions {
        mode: args.mode,
        place,
        bytes: args.bytes,
        rate: args.rate,
        fixed: args.fixed,
        greeting: args.greeting,
        stop_reading_after: args.stop_reading_after,
        close_after: args.close_after,
        reset_after: args.reset_after,
    })
}

fn bench_command(args: BenchArgs) -> u8 {
    let command = match args.proxy.is_empty() {
        true => None,
        false => match ProxyCommand::new(&args.proxy) {
            Ok(command) => Some(command),
            Err(message) => return usage_error(&message),
        },
    };
    let options = tprox::bench::BenchOptions {
        profiles: args.profiles,
        command,
        duration: Duration::from_secs_f64(args.duration),
        streams: args.streams as usize,
        workers: args.workers as usize,
        idle: args.idle as usize,
        idle_profiles: args.idle_profiles,
        rounds: args.rounds as usize,
        json: args.json,
    };
    proxy::become_subreaper();
    stop_everything_on_interrupt();
    tprox::bench::main(options)
}

fn fuzz_command(args: FuzzArgs) -> u8 {
    let proxy = match (args.reference, args.proxy.is_empty()) {
        (true, _) => ProxyCommand::reference(),
        (false, false) => ProxyCommand::new(&args.proxy),
        (false, true) => Err(
            "no proxy to fuzz: give the proxy command (tprox fuzz ./tcpproxy), \
                              or --reference; see tprox fuzz --help"
                .into(),
        ),
    };
    let proxy = match proxy {
        Ok(proxy) => proxy,
        Err(message) => return usage_error(&message),
    };
    let run = RunOptions {
        startup_timeout: Duration::from_secs_f64(args.startup_timeout),
        ..RunOptions::new(proxy, Duration::from_secs_f64(args.stall_timeout))
    };
    let target = if args.reference {
        "the reference proxy".to_string()
    } else {
        args.proxy.join(" ")
    };
    proxy::become_subreaper();
    stop_everything_on_interrupt();
    let mut replay_line = vec![
        "tprox fuzz --replay".to_string(),
        shell_quote(&args.save.to_string_lossy()),
    ];
    if args.stall_timeout != 10.0 {
        replay_line.push(format!("--stall-timeout {}", args.stall_timeout));
    }
    if args.reference {
        replay_line.push("--reference".into());
    } else {
        replay_line.push("--".into());
        replay_line.extend(args.proxy.iter().map(|a| shell_quote(a)));
    }
    let code = match &args.replay {
        Some(path) => fuzz_replay(path, &run, &target),
        None => fuzz_generate(&args, run, &target, &replay_line.join(" ")),
    };
    proxy::sweep_orphans();
    code
}

fn fuzz_replay(path: &std::path::Path, run: &RunOptions, target: &str) -> u8 {
    let scenario = match fuzz::load(path) {
        Ok(scenario) => scenario,
        Err(message) => return usage_error(&message),
    };
    eprintln!(
        "tprox fuzz: replaying {} ({} step(s)) against {target}",
        path.display(),
        scenario.steps.len()
    );
    match fuzz::replay(run, &scenario) {
        Err(e) => {
            eprintln!("tprox: {e}");
            exit::SETUP
        }
        Ok(Ok(())) => {
            say(format_args!("the scenario passed:\n{scenario}"));
            exit::PASSED
        }
        Ok(Err(violation)) => {
            say(format_args!(
                "the scenario failed: {}",
                fuzz::describe(&scenario, &violation)
            ));
            exit::FAILED
        }
    }
}

fn fuzz_generate(args: &FuzzArgs, run: RunOptions, target: &str, replay_line: &str) -> u8 {
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..1_000_000_000));
    let options = fuzz::FuzzOptions {
        run,
        cases: args.cases,
        seed,
        max_shrink_time: Duration::from_secs_f64(args.max_shrink_time),
        instance: if args.instance == "shared" {
            fuzz::Instance::Shared
        } else {
            fuzz::Instance::Fresh
        },
        persist: args.persist.clone(),
    };
    eprintln!(
        "tprox fuzz: {} scenario(s) against {target} (stall timeout {} s, seed {seed}, {} proxy per scenario)",
        args.cases,
        args.stall_timeout,
        if options.instance == fuzz::Instance::Shared { "one" } else { "a fresh" }
    );
    let bar = indicatif::ProgressBar::new(u64::from(args.cases));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} scenarios {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut failed_at = None;
    let outcome = fuzz::fuzz(&options, |played, failed| {
        if failed && failed_at.is_none() {
            failed_at = Some(played);
            bar.set_message("failed: shrinking…");
        }
        if failed_at.is_none() {
            bar.set_position(u64::from(played));
        }
    });
    bar.finish_and_clear();
    match outcome {
        fuzz::FuzzOutcome::Setup(e) => {
            eprintln!("tprox: {e}");
            exit::SETUP
        }
        fuzz::FuzzOutcome::Passed { scenarios } => {
            say(format_args!("{scenarios} scenario(s) passed (seed {seed})"));
            exit::PASSED
        }
        fuzz::FuzzOutcome::Failed {
            minimal,
            violation,
            original_steps,
            shrink_runs,
        } => {
            say(format_args!(
                "scenario {} of {} failed; shrunk from {original_steps} to {} step(s) in {shrink_runs} failing replay(s)",
                failed_at.unwrap_or(0),
                args.cases,
                minimal.steps.len()
            ));
            say(fuzz::describe(&minimal, &violation));
            match fuzz::save(&args.save, &minimal) {
                Ok(()) => say(format_args!(
                    "saved to {}; replay it with:\n    {replay_line}",
                    args.save.display()
                )),
                Err(message) => eprintln!("tprox: {message}"),
            }
            say(format_args!(
                "seed {seed}: tprox fuzz --seed {seed} --cases {} generates the same scenarios",
                args.cases
            ));
            exit::FAILED
        }
    }
}

/// On Ctrl-C (or SIGTERM, SIGHUP), stops every proxy tprox started and exits with 130. For
/// commands that run outside an async runtime of their own.
fn stop_everything_on_interrupt() {
    std::thread::spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let signal = runtime.block_on(interrupted());
        proxy::kill_all();
        proxy::sweep_orphans();
        eprintln!("\ntprox: interrupted by {signal}; every proxy tprox started has been stopped");
        std::process::exit(exit::INTERRUPTED.into());
    });
}

fn grade_command(args: GradeArgs) -> u8 {
    if let Some(GradeCommand::Merge { out, gradebooks }) = args.command {
        return merge_command(&out, &gradebooks);
    }
    let (Some(grading_file), submissions) = (args.grading_file, args.submissions) else {
        return usage_error("grade: give the grading file and the submission directories");
    };
    let grading = match Grading::load(&grading_file, CATALOGUE) {
        Ok(grading) => grading,
        Err(e) => return usage_error(&e),
    };
    let submissions = match grade::submission_dirs(&submissions) {
        Ok(dirs) => dirs,
        Err(e) => return usage_error(&e),
    };
    let jobs = args.jobs.map_or_else(
        || std::thread::available_parallelism().map_or(2, usize::from),
        usize::from,
    );
    let partition = args.partition.unwrap_or(Partition::WHOLE);
    let options = GradeOptions {
        grading,
        submissions,
        out: args.out.clone(),
        jobs,
        partition,
        keep_scratch: args.keep_scratch,
    };
    let share = partition.take(options.submissions.clone()).len();
    eprintln!(
        "tprox grade: {share} submission(s){}, {} case(s) worth {} points, {jobs} at once; gradebook in {}",
        if partition == Partition::WHOLE {
            String::new()
        } else {
            format!(" (partition {partition} of {})", options.submissions.len())
        },
        options.grading.cases.len(),
        grade::gradebook::number(options.grading.max_total()),
        args.out.display()
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tprox: cannot start the async runtime: {e}");
            return exit::SETUP;
        }
    };
    let book = runtime.block_on(async {
        tokio::select! {
            book = grade::grade(&options) => Some(book),
            signal = interrupted() => {
                proxy::kill_all();
                eprintln!("\ntprox grade: interrupted by {signal}; every process tprox started has been stopped; no gradebook written");
                None
            }
        }
    });
    drop(runtime);
    proxy::sweep_orphans();
    let Some(book) = book else {
        return exit::INTERRUPTED;
    };
    match grade::write(&book, &args.out) {
        Ok(paths) => {
            for path in paths {
                say(format_args!("wrote {}", path.display()));
            }
            exit::PASSED
        }
        Err(e) => usage_error(&e),
    }
}

fn merge_command(out: &std::path::Path, paths: &[PathBuf]) -> u8 {
    let books = match paths.iter().map(|p| Gradebook::read_json(p)).collect() {
        Ok(books) => books,
        Err(e) => return usage_error(&e),
    };
    let merged = match Gradebook::merge(books) {
        Ok(merged) => merged,
        Err(e) => return usage_error(&format!("grade merge: {e}")),
    };
    let missing = merged.missing_partitions();
    if !missing.is_empty() {
        eprintln!(
            "tprox grade merge: warning: partition(s) {} missing: their submissions are not in the gradebook",
            missing.join(", ")
        );
    }
    match grade::write(&merged, out) {
        Ok(paths) => {
            say(format_args!(
                "merged {} gradebook(s), {} submission(s)",
                paths.len(),
                merged.submissions.len()
            ));
            for path in paths {
                say(format_args!("wrote {}", path.display()));
            }
            exit::PASSED
        }
        Err(e) => usage_error(&e),
    }
}

/// Runs the selection `--repeat` times (once by default) and, when repeated, sums up each
/// case's failure rate.
async fn run_repeatedly(cases: &[&'static tprox::Case], options: &RunOptions, cli: &Cli) -> u8 {
    if cli.repeat == 1 {
        return run(cases, options, cli).await.0;
    }
    let mut failures = vec![0u32; cases.len()];
    let mut worst = exit::PASSED;
    for i in 0..cli.repeat {
        let options = RunOptions {
            seed: options.seed.wrapping_add(u64::from(i)),
            ..options.clone()
        };
        if cli.format == Format::Human {
            say(format_args!("\n# run {} of {}", i + 1, cli.repeat));
        }
        let (code, reports) = run(cases, &options, cli).await;
        if code == exit::SETUP {
            return code;
        }
        worst = worst.max(code);
        for (count, report) in failures.iter_mut().zip(&reports) {
            if Summary::of(std::slice::from_ref(report), cli.strict).failed > 0 {
                *count += 1;
            }
        }
    }
    let mut text = format!("\nFailure rate per case over {} runs:\n", cli.repeat);
    for (case, count) in cases.iter().zip(&failures).filter(|(_, &count)| count > 0) {
        text.push_str(&format!(
            "  {:<24} failed {count} of {} runs ({:.0}%)\n",
            case.id,
            cli.repeat,
            f64::from(*count) * 100.0 / f64::from(cli.repeat)
        ));
    }
    if failures.iter().all(|&count| count == 0) {
        text.push_str("  no case failed in any run\n");
    }
    eprint!("{text}");
    worst
}

async fn run(
    cases: &[&'static tprox::Case],
    options: &RunOptions,
    cli: &Cli,
) -> (u8, Vec<runner::CaseReport>) {
    let rerun = rerun_template(cli, options.seed);
    let human = cli.format == Format::Human;
    if human {
        say(format_args!(
            "tprox {}: testing {} (stall timeout {} s, seed {}, {} case(s))",
            env!("CARGO_PKG_VERSION"),
            options.proxy.label,
            options.stall.as_secs_f64(),
            options.seed,
            cases.len()
        ));
    }
    let started = SystemTime::now();
    if let Err(e) = runner::preflight(options).await {
        eprintln!("tprox: setup failed: {e}");
        return (exit::SETUP, Vec::new());
    }
    // With a machine format on stdout, the human lines go nowhere; the status line stays on
    // stderr.
    let sink: Box<dyn Write> = if human {
        Box::new(std::io::stdout())
    } else {
        Box::new(std::io::sink())
    };
    let notes = match &cli.profile {
        Some(name) => tprox::profiles::find(name).map_or(&[][..], |p| p.notes),
        None => &[],
    };
    let mut reporter = HumanReporter::new(sink, cli.verbose, cli.strict, cases.len())
        .with_rerun(rerun)
        .with_notes(notes);
    let reports = match runner::run(cases, options, &mut reporter).await {
        Ok(reports) => reports,
        Err(e) => {
            eprintln!("tprox: setup failed: {e}");
            return (exit::SETUP, Vec::new());
        }
    };
    let summary = Summary::of(&reports, cli.strict);
    reporter.finish(&summary);
    let info = RunInfo {
        proxy: options.proxy.label.clone(),
        stall: options.stall,
        seed: options.seed,
        started,
        strict: cli.strict,
    };
    if !human {
        let _ =
            std::io::stdout().write_all(formats::render(cli.format, &info, &reports).as_bytes());
    }
    for (format, path) in &cli.output {
        if let Err(e) = std::fs::write(path, formats::render(*format, &info, &reports)) {
            eprintln!("tprox: cannot write the report to {}: {e}", path.display());
            return (exit::SETUP, reports);
        }
    }
    let code = if summary.failed > 0 {
        exit::FAILED
    } else {
        exit::PASSED
    };
    (code, reports)
}

/// The command line that reruns one case (`{id}`) with the same seed and settings.
fn rerun_template(cli: &Cli, seed: u64) -> String {
    let mut parts = vec![
        "tprox".to_string(),
        "--only".into(),
        "{id}".into(),
        "--seed".into(),
        seed.to_string(),
    ];
    if cli.stall_timeout != 10.0 {
        parts.extend(["--stall-timeout".into(), cli.stall_timeout.to_string()]);
    }
    if cli.connections != 200 {
        parts.extend(["--connections".into(), cli.connections.to_string()]);
    }
    if cli.bulk_kib != 2048 {
        parts.extend(["--bulk-kib".into(), cli.bulk_kib.to_string()]);
    }
    if cli.strict {
        parts.push("--strict".into());
    }
    if cli.shared {
        parts.push("--shared".into());
    }
    if let Some(name) = &cli.profile {
        parts.extend(["--profile".into(), shell_quote(name)]);
    } else if cli.reference {
        parts.push("--reference".into());
    } else {
        parts.push("--".into());
        parts.extend(cli.proxy.iter().map(|a| shell_quote(a)));
    }
    parts.join(" ")
}

fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,{}@%+".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn list() {
    for case in CATALOGUE {
        say(format_args!(
            "{:<24} {:<12} {:<6}  {}",
            case.id,
            rules::list(case.rules),
            case.level,
            case.name
        ));
    }
}

fn print_rules() {
    for rule in rules::Rule::ALL {
        let cases: Vec<&str> = CATALOGUE
            .iter()
            .filter(|c| c.rules.contains(&rule))
            .map(|c| c.id)
            .collect();
        say(format_args!("{rule} {}", rule.title()));
        say(format_args!("    {}", rule.text()));
        if cases.is_empty() {
            say("    checked by: no case yet");
        } else {
            say(format_args!("    checked by: {}", cases.join(", ")));
        }
    }
}

/// Prints a line on stdout. A closed stdout (`tprox --list | head`) is not an error worth a
/// panic: the output is simply not wanted any more.
fn say(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn usage_error(message: &str) -> u8 {
    eprintln!("tprox: {message}");
    exit::SETUP
}

/// Resolves when tprox is asked to stop, with the signal's name.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    async fn recv(stream: &mut Option<Signal>) {
        match stream {
            Some(stream) => {
                stream.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    tokio::select! {
        _ = recv(&mut int) => "SIGINT",
        _ = recv(&mut term) => "SIGTERM",
        _ = recv(&mut hup) => "SIGHUP",
    }
}
