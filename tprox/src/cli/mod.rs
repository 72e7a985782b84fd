//! The `tprox` command line: what each option means, and which library module each command
//! hands its work to. `main.rs` only calls [`main`]; each subcommand's glue (options into the
//! library's settings, progress and messages) sits in a module of its own here, and the work
//! itself in the library modules they name.

mod bench;
mod conformance;
mod diff;
mod fuzz;
mod grade;
mod matrix;
mod peer;

use std::path::PathBuf;

use clap::Parser;

use crate::error::{self, exit_status, Conclusion, Error};
use crate::formats::Format;
use crate::harness::Scale;
use crate::proxy;
use crate::runner::defaults;

use bench::BenchArgs;
use diff::DiffArgs;
use fuzz::FuzzArgs;
use grade::GradeArgs;
use matrix::MatrixArgs;
use peer::PeerArgs;

const EXAMPLES: &str = "\
Examples:
  tprox --reference                       test the reference proxy built into tprox
  tprox ./tcpproxy                        runs ./tcpproxy 127.0.0.1 DEST_PORT LISTEN_PORT
  tprox -- socat TCP-LISTEN:{listen_port},reuseaddr,fork TCP:{dest_host}:{dest_port}
  tprox --only shutdown/ --only 'timeout/*' ./tcpproxy
  tprox --stall-timeout 2 -- ./myproxy --timeout {stall_timeout} {dest_host} {dest_port} {listen_port}
  tprox grade grading.toml submissions/*  grade a class of proxies (see tprox grade --help)
  tprox fuzz --reference                  generated scenarios, shrunk on failure (tprox fuzz --help)
  tprox --profile nginx                   a known proxy with a generated configuration
  tprox --proxy-protocol send:v2 -- haproxy -f haproxy.cfg   a proxy that sends PROXY v2 headers
  tprox --udp -- socat -T {stall_timeout} UDP4-RECVFROM:{listen_port},fork UDP4:{dest_host}:{dest_port}
  tprox --reference --udp                 the UDP catalogue against the reference's UDP forwarding
  tprox matrix                            every known proxy through the catalogue, as a matrix
  tprox --expect tprox-expect.toml ./tcpproxy   known deviations green, regressions red
  tprox diff main.json branch.json        the cases whose verdict changed between two reports

Exit status:
  0  every selected case passed (with --expect: the run matched the expectations file)
  1  at least one case failed (with --expect: a regression or an unexpected pass)
  2  bad usage, or the proxy could not be started (it exited, or never listened)
  3  the filters selected no case
  4  the run finished, but a report, gradebook or table could not be written
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

    /// The proxy is a SOCKS5 or HTTP CONNECT front: socks5, socks5:USER:PASS, connect or
    /// connect:USER:PASS. Every client first does the handshake naming the case's destination,
    /// then the case runs unchanged. The proxy is started with `LISTEN_PORT` only (or with
    /// `{listen_port}` and `{stall_timeout}` where the command has them); with --reference, the
    /// reference proxy's own front (tprox-relay --socks5 or --http-connect) is tested.
    #[arg(long, value_name = "KIND[:USER:PASS]", value_parser = parse_front)]
    front: Option<tprox_core::front::Front>,

    /// The proxy speaks the PROXY protocol. send:v1 (text) or send:v2 (binary): it sends the
    /// header to the destination, as haproxy's send-proxy and send-proxy-v2 or nginx's
    /// `proxy_protocol on` do; tprox's destination reads it off every connection and the
    /// header cases judge it (R14). accept:v1 or accept:v2: it expects one from its clients, as
    /// haproxy's accept-proxy or nginx's `listen ... proxy_protocol` do; every tprox client
    /// sends one first and the receiving cases judge how it is read (R15). Both, for a chained
    /// proxy: accept:v2,send:v1. Every other case runs behind the headers. With --reference,
    /// the reference proxy is started with --accept-proxy and/or --send-proxy VERSION.
    #[arg(long, value_name = "MODE", value_parser = parse_proxy_protocol)]
    proxy_protocol: Option<tprox_core::proxy_protocol::Mode>,

    /// The proxy forwards UDP datagrams, not TCP connections: `{listen_port}` is a UDP port,
    /// tprox's destination answers datagrams on `{dest_port}`, and the UDP catalogue runs
    /// instead of the TCP one (datagrams whole and alone, a session per client, idle sessions
    /// dropped after `{stall_timeout}` and active ones kept, bounded memory; rules R16-R19 of
    /// docs/contract.md). With --reference, the reference proxy forwards UDP (tprox-relay
    /// --udp).
    #[arg(long, conflicts_with_all = ["front", "proxy_protocol"])]
    udp: bool,

    /// Test a known proxy (socat, haproxy, nginx, rinetd, redir, tcpproxy, ref; the fronts
    /// squid, tinyproxy, microsocks, dante, ref-socks5, ref-connect, tested through their
    /// handshake; the PROXY protocol senders haproxy-send-proxy, haproxy-send-proxy-v2,
    /// nginx-proxy-protocol, ref-send-proxy and receivers haproxy-accept-proxy,
    /// nginx-accept-proxy-protocol, ref-chained-proxy, tested with their headers), started with
    /// a generated configuration; see --list-profiles.
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

    /// Print the whole contract as Markdown (rules, cases, what each case assumes of the
    /// proxy's speed and the machine, time limits): the text of docs/contract.md. Then exit.
    #[arg(long)]
    contract: bool,

    /// Run only cases whose id starts with PATTERN, or matches it as a glob (repeatable).
    #[arg(long, value_name = "PATTERN")]
    only: Vec<String>,

    /// Leave out cases whose id starts with PATTERN, or matches it as a glob (repeatable).
    #[arg(long, value_name = "PATTERN")]
    skip: Vec<String>,

    /// The stall timeout the proxy uses, in seconds (what the timeout cases expect).
    #[arg(long, value_name = "SECS", default_value_t = defaults::STALL.as_secs_f64(), value_parser = positive_seconds, allow_negative_numbers = true)]
    stall_timeout: f64,

    /// How many cases run at once. Cases mostly wait, so this may exceed the cores.
    #[arg(long, short = 'j', value_name = "N", default_value_t = defaults::JOBS as u16, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,

    /// How long the proxy may take to start listening, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = defaults::STARTUP_TIMEOUT.as_secs_f64(), value_parser = positive_seconds, allow_negative_numbers = true)]
    startup_timeout: f64,

    /// Run every case against one proxy instance, in sequence, like the original tester: state
    /// that leaks from one case into the next then shows up.
    #[arg(long)]
    shared: bool,

    /// Count failed SHOULD cases (low latency, R12) as failures, not warnings.
    #[arg(long)]
    strict: bool,

    /// Judge the run against FILE (tprox-expect.toml, kept in the proxy's repository): the
    /// cases the proxy is known not to pass, each with its reason. Known deviations leave the
    /// run green; a case expected to pass that fails (a regression) or expected to fail that
    /// passes (the file needs updating) fails it, and the output says what to change.
    #[arg(long, value_name = "FILE")]
    expect: Option<PathBuf>,

    /// With --expect FILE: write FILE from this run (an entry for every case that failed,
    /// reasons already written kept; none for a case that passed) and exit 0.
    #[arg(long, requires = "expect")]
    update_expect: bool,

    /// Connections open at once in concurrency/many. Each needs two descriptors in tprox and
    /// two in the proxy: mind the open-file limit (ulimit -n).
    #[arg(long, value_name = "N", default_value_t = Scale::default().connections as u32, value_parser = clap::value_parser!(u32).range(1..=20000))]
    connections: u32,

    /// Size of the bulk transfer through the chain of connections, in KiB (the original: 2048).
    #[arg(long, value_name = "KIB", default_value_t = (Scale::default().bulk_bytes / 1024) as u32, value_parser = clap::value_parser!(u32).range(1..=1048576))]
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
    /// reset, and the relays hub and channels; TCP or UDP (see tprox peer --help).
    Peer(PeerArgs),
    /// Run the catalogue against every known proxy and write the compatibility matrix as JSON,
    /// Markdown and HTML (see tprox matrix --help).
    Matrix(MatrixArgs),
    /// Compare two runs' JSON reports: the cases whose verdict changed, and the regressions
    /// (see tprox diff --help).
    Diff(DiffArgs),
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

/// Parses the command line and runs what it asks for; returns the exit status, chosen from
/// the command's result by [`exit_status`] and nowhere else.
pub fn main() -> u8 {
    let cli = Cli::parse();
    let command = match &cli.command {
        Some(Command::Grade(_)) => "tprox grade",
        Some(Command::Fuzz(_)) => "tprox fuzz",
        Some(Command::Bench(_)) => "tprox bench",
        Some(Command::Peer(_)) => "tprox peer",
        Some(Command::Matrix(_)) => "tprox matrix",
        Some(Command::Diff(_)) => "tprox diff",
        None => "tprox",
    };
    exit_status(command, dispatch(cli))
}

fn dispatch(cli: Cli) -> error::Result {
    match cli.command {
        Some(Command::Grade(args)) => return grade::run(args),
        Some(Command::Fuzz(args)) => return fuzz::run(args),
        Some(Command::Bench(args)) => return bench::run(args),
        Some(Command::Peer(args)) => return peer::run(args),
        Some(Command::Matrix(args)) => return matrix::run(args),
        Some(Command::Diff(args)) => return diff::run(args),
        None => {}
    }
    if cli.list {
        conformance::list();
    } else if cli.list_profiles {
        say(format_args!("{}", crate::profiles::describe_all()));
    } else if cli.rules {
        conformance::print_rules();
    } else if cli.contract {
        say(crate::contract::markdown().trim_end());
    } else {
        return conformance::run_suite(&cli);
    }
    Ok(Conclusion::Passed)
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

/// Runs `work` on a runtime of its own until it ends or tprox is asked to stop (Ctrl-C,
/// SIGTERM, SIGHUP): the one way every command is interrupted. On a signal, every process
/// tprox started is stopped, the command says so (`lost` adds what was not done then, as `; no
/// gradebook written`), and it fails with [`Error::Interrupted`]. A daemon that a proxy leaves
/// behind is re-parented to tprox while the work runs and swept at the end.
fn run_interruptible<F: std::future::Future>(
    command: &str,
    lost: &str,
    work: F,
) -> error::Result<F::Output> {
    interruptible(command, lost, work, false)
}

/// [`run_interruptible`] for work that blocks its thread (load generators and scenarios that
/// drive runtimes of their own): it runs on a thread of the runtime's blocking pool.
fn run_blocking_interruptible<T: Send + 'static>(
    command: &str,
    lost: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> error::Result<T> {
    // Spawned once the runtime runs: spawning needs one.
    let work = async move { tokio::task::spawn_blocking(work).await };
    let joined = interruptible(command, lost, work, true)?;
    // A panic in the work is a bug of tprox's: shown as one, not turned into a verdict.
    Ok(joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())))
}

fn interruptible<F: std::future::Future>(
    command: &str,
    lost: &str,
    work: F,
    blocking: bool,
) -> error::Result<F::Output> {
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Error::Setup(format!("cannot start the async runtime: {e}")))?;
    proxy::become_subreaper();
    let outcome = runtime.block_on(async {
        tokio::select! {
            output = work => Ok(output),
            signal = interrupted() => {
                proxy::kill_all();
                // Not eprintln!: stderr may be gone with whoever stopped tprox, and a panic
                // here would unwind into waiting for the work instead of leaving it.
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "\n{command}: interrupted by {signal}; every process tprox started has been stopped{lost}"
                );
                Err(Error::Interrupted)
            }
        }
    });
    match (&outcome, blocking) {
        // Work that blocks a thread cannot be cancelled: interrupted, it is left to end with
        // the process rather than waited for (its proxies are stopped already).
        (Err(Error::Interrupted), true) => runtime.shutdown_background(),
        // Dropping the runtime drops its tasks, and with them the proxies they still hold.
        _ => drop(runtime),
    }
    proxy::sweep_orphans();
    outcome
}

/// Prints a line on stdout. A closed stdout (`tprox --list | head`) is not an error worth a
/// panic: the output is simply not wanted any more.
fn say(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
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

/// `--front`'s value.
pub(super) fn parse_front(text: &str) -> Result<tprox_core::front::Front, String> {
    text.parse()
}

/// `--proxy-protocol`'s value.
pub(super) fn parse_proxy_protocol(text: &str) -> Result<tprox_core::proxy_protocol::Mode, String> {
    text.parse()
}
