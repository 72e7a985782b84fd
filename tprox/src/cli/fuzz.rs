//! `tprox fuzz`: generated scenarios and their shrinking (the work is in the `tprox-fuzz`
//! crate).

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::proxy::ProxyCommand;
use crate::runner::RunOptions;
use tprox_fuzz as fuzz;

const FUZZ_EXAMPLES: &str = "\
Examples:
  tprox fuzz --reference                          200 scenarios against the reference proxy
  tprox fuzz --stall-timeout 2 ./tcpproxy          classic style, as in the main run
  tprox fuzz --cases 1000 --seed 7 -- python3 proxy.py {dest_host} {dest_port} {listen_port}
  tprox fuzz --replay tprox-fuzz-failure.json ./tcpproxy     play a saved scenario again
  tprox fuzz --udp --reference                    UDP scenarios against the reference's UDP forwarding

A scenario is a short program for both peers of up to three connections: writes of random
sizes (1 byte to several MiB) from either side, pauses, reads that stop, resume or trickle,
half-closes from either side in either order, and resets. The contract is the oracle: each
side receives exactly what the other wrote (R1), a shutdown arrives as EOF after all the data
while the other direction stays open (R5), a reset closes the other side promptly (R6), and
nothing else is closed (R7: a scenario's pauses stay far below the stall timeout).

With --udp the proxy is a UDP forwarder and a scenario is datagrams, one at a time, on up to
three sessions: a client sends one (0 to 65,507 bytes), or the destination sends one to a
session it has heard from, with pauses between. Each must arrive whole (R16); each session
reaches the destination from one source of its own, and the destination's datagrams reach
that session's client and no other (R17).

On the first failure, the scenario is shrunk (fewer steps, smaller writes) to a minimal one
that still fails, printed as steps, saved as JSON (--save), and the command that replays it
is printed. Every run prints its seed: the same seed generates the same scenarios.

Exit status: 0 every scenario passed, 1 a scenario failed, 2 bad usage or the proxy could not
be started, 130 interrupted.";

/// Fuzz a proxy with generated scenarios, judged by the contract.
#[derive(Debug, clap::Args)]
#[command(after_help = FUZZ_EXAMPLES)]
pub(super) struct FuzzArgs {
    /// The proxy program and its arguments, as for the main run (put `--` before it if it
    /// has options of its own).
    #[arg(value_name = "PROXY", trailing_var_arg = true)]
    proxy: Vec<String>,

    /// Fuzz the reference proxy that ships with tprox.
    #[arg(long, conflicts_with = "proxy")]
    reference: bool,

    /// The proxy is a SOCKS5 or HTTP CONNECT front (socks5, socks5:USER:PASS, connect,
    /// connect:USER:PASS): every connection does the handshake first, as in the main run.
    /// With --reference, the reference's own front is fuzzed.
    #[arg(long, value_name = "KIND[:USER:PASS]", value_parser = super::parse_front)]
    front: Option<tprox_core::front::Front>,

    /// The proxy speaks the PROXY protocol (send:v1, send:v2, accept:v1, accept:v2, or one of
    /// each joined by a comma): every scenario runs behind the headers. With --reference, the
    /// reference speaks it.
    #[arg(long, value_name = "MODE", value_parser = super::parse_proxy_protocol)]
    proxy_protocol: Option<tprox_core::proxy_protocol::Mode>,

    /// The proxy forwards UDP: scenarios of datagrams on sessions, judged by the UDP rules
    /// (R16, R17). With --reference, the reference forwards UDP.
    #[arg(long, conflicts_with_all = ["front", "proxy_protocol"])]
    udp: bool,

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
    #[arg(long, value_name = "SECS", default_value_t = defaults::STALL.as_secs_f64(), value_parser = positive_seconds, allow_negative_numbers = true)]
    stall_timeout: f64,

    /// How long the proxy may take to start listening, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = defaults::STARTUP_TIMEOUT.as_secs_f64(), value_parser = positive_seconds, allow_negative_numbers = true)]
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

pub(super) fn run(args: FuzzArgs) -> error::Result {
    // The reference's front reads its credentials from a file that lives as long as the run.
    let scratch = crate::profiles::scratch_dir().map_err(Error::Setup)?;
    let proxy = match (args.reference, args.proxy.is_empty(), &args.front) {
        (true, _, Some(front)) => ProxyCommand::reference_front(front, scratch.path()),
        (true, _, None) => ProxyCommand::reference(),
        (false, false, Some(_)) => ProxyCommand::new_front(&args.proxy),
        (false, false, None) => ProxyCommand::new(&args.proxy),
        (false, true, _) => Err(
            "no proxy to fuzz: give the proxy command (tprox fuzz ./tcpproxy), \
                              or --reference; see tprox fuzz --help"
                .into(),
        ),
    };
    let mut proxy = proxy.map_err(Error::Usage)?;
    if args.udp && args.reference {
        proxy = proxy.arg("--udp");
    }
    if let (Some(mode), true) = (args.proxy_protocol, args.reference) {
        for arg in mode.reference_args() {
            proxy = proxy.arg(&arg);
        }
    }
    let run = RunOptions {
        startup_timeout: Duration::from_secs_f64(args.startup_timeout),
        front: args.front.clone().map(std::sync::Arc::new),
        proxy_protocol: args.proxy_protocol,
        udp: args.udp,
        ..RunOptions::new(proxy, Duration::from_secs_f64(args.stall_timeout))
    };
    let mut target = if args.reference {
        "the reference proxy".to_string()
    } else {
        args.proxy.join(" ")
    };
    if let Some(front) = &args.front {
        target.push_str(&format!(" through its {front} front"));
    }
    if let Some(send) = &args.proxy_protocol {
        target.push_str(&send.described());
    }
    if args.udp {
        target.push_str(" (UDP)");
    }
    let mut replay_line = vec![
        "tprox fuzz --replay".to_string(),
        shell_quote(&args.save.to_string_lossy()),
    ];
    if args.stall_timeout != defaults::STALL.as_secs_f64() {
        replay_line.push(format!("--stall-timeout {}", args.stall_timeout));
    }
    if args.udp {
        replay_line.push("--udp".into());
    }
    if let Some(send) = &args.proxy_protocol {
        replay_line.push(format!("--proxy-protocol {send}"));
    }
    if let Some(front) = &args.front {
        // The password is in the replay line on purpose: it is the user's own, and the line
        // must work as printed.
        replay_line.push(format!("--front {}", shell_quote(&front.spelled())));
    }
    if args.reference {
        replay_line.push("--reference".into());
    } else {
        replay_line.push("--".into());
        replay_line.extend(args.proxy.iter().map(|a| shell_quote(a)));
    }
    run_blocking_interruptible("tprox fuzz", "", move || match &args.replay {
        Some(path) => fuzz_replay(path, &run, &target),
        None => fuzz_generate(&args, run, &target, &replay_line.join(" ")),
    })?
}

fn fuzz_replay(path: &std::path::Path, run: &RunOptions, target: &str) -> error::Result {
    let scenario = fuzz::load(path).map_err(Error::Usage)?;
    match (scenario.is_udp(), run.udp) {
        (true, false) => {
            return Err(Error::Usage(format!(
                "{} is a UDP scenario (datagrams): replay it with --udp",
                path.display()
            )))
        }
        (false, true) if !scenario.steps.iter().all(|s| s.conn().is_none()) => {
            return Err(Error::Usage(format!(
                "{} is a TCP scenario (connections): replay it without --udp",
                path.display()
            )))
        }
        _ => {}
    }
    eprintln!(
        "tprox fuzz: replaying {} ({} step(s)) against {target}",
        path.display(),
        scenario.steps.len()
    );
    match fuzz::replay(run, &scenario) {
        Err(e) => Err(Error::Setup(e.to_string())),
        Ok(Ok(())) => {
            say(format_args!("the scenario passed:\n{scenario}"));
            Ok(Conclusion::Passed)
        }
        Ok(Err(violation)) => {
            say(format_args!(
                "the scenario failed: {}",
                fuzz::describe(&scenario, &violation)
            ));
            Ok(Conclusion::Failed)
        }
    }
}

fn fuzz_generate(
    args: &FuzzArgs,
    run: RunOptions,
    target: &str,
    replay_line: &str,
) -> error::Result {
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
        "tprox fuzz: {} scenario(s) against {target} (stall timeout {} s, seed {seed}, {})",
        args.cases,
        args.stall_timeout,
        if options.instance == fuzz::Instance::Shared {
            "one proxy for all scenarios"
        } else {
            "a fresh proxy per scenario"
        }
    );
    let bar = crate::progress::bar(
        u64::from(args.cases),
        "{bar:40} {pos}/{len} scenarios {msg}",
    )
    .unwrap_or_else(indicatif::ProgressBar::hidden);
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
        fuzz::FuzzOutcome::Setup(e) => Err(Error::Setup(e.to_string())),
        fuzz::FuzzOutcome::Passed { scenarios } => {
            say(format_args!("{scenarios} scenario(s) passed (seed {seed})"));
            Ok(Conclusion::Passed)
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
                Err(message) => eprintln!("tprox fuzz: {message}"),
            }
            say(format_args!(
                "seed {seed}: tprox fuzz --seed {seed} --cases {} generates the same scenarios",
                args.cases
            ));
            Ok(Conclusion::Failed)
        }
    }
}
