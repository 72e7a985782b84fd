//! The main job: the catalogue (or a selection of it) run against one proxy, once or
//! `--repeat` times, reported as the options ask.

use std::io::Write;
use std::time::{Duration, SystemTime};

use super::*;
use crate::formats::{self, RunInfo};
use crate::harness::Dialing;
use crate::human::HumanReporter;
use crate::proxy::ProxyCommand;
use crate::rules;
use crate::runner::{self, RunOptions};
use crate::select::{self, Pattern};
use crate::summary::Summary;
use crate::verdict::Verdict;
use tprox_core::cases::catalogue;

/// Runs the suite as `cli` says.
pub(super) fn run_suite(cli: &Cli) -> error::Result {
    // A profile's configuration is written to a scratch directory that lives as long as the run.
    let mut _scratch = None;
    // A front profile brings its front; any other profile is a plain forwarder.
    let front = match (&cli.profile, &cli.front) {
        (Some(name), given) => {
            let profile = crate::profiles::find(name).map_err(Error::Usage)?;
            match (profile.front(), given) {
                (None, Some(_)) => {
                    return Err(Error::Usage(format!(
                        "--front with --profile {name}: {name} is not a SOCKS5 or HTTP CONNECT \
                         front (the fronts among the profiles: {})",
                        crate::profiles::fronts().join(", ")
                    )))
                }
                (Some(own), Some(given)) if own.kind() != given.kind() => {
                    return Err(Error::Usage(format!(
                        "--front {given} with --profile {name}: {name} is a {own} front"
                    )))
                }
                (own, given) => given.clone().or(own),
            }
        }
        (None, given) => given.clone(),
    };
    let proxy = match (&cli.profile, cli.reference, cli.proxy.is_empty()) {
        (None, true, _) if cli.front.is_some() => {
            let scratch = crate::profiles::scratch_dir().map_err(Error::Setup)?;
            let command = ProxyCommand::reference_front(
                cli.front.as_ref().expect("checked above"),
                scratch.path(),
            );
            _scratch = Some(scratch);
            command
        }
        (None, false, false) if cli.front.is_some() => ProxyCommand::new_front(&cli.proxy),
        (Some(name), _, _) => {
            let profile = crate::profiles::find(name).map_err(Error::Usage)?;
            let scratch = crate::profiles::scratch_dir().map_err(Error::Setup)?;
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
    let proxy = proxy.map_err(Error::Usage)?;
    let parse = |patterns: &[String]| {
        patterns
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<Vec<_>, _>>()
    };
    let only = parse(&cli.only).map_err(Error::Usage)?;
    let skip = parse(&cli.skip).map_err(Error::Usage)?;
    let (cases, unmatched) = select::select(&catalogue(front.is_some()), &only, &skip);
    for pattern in &unmatched {
        eprintln!("tprox: warning: pattern '{pattern}' matches no case (see tprox --list)");
    }
    if cases.is_empty() {
        return Err(Error::NothingSelected);
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
        front: front.clone().map(std::sync::Arc::new),
        ..RunOptions::new(proxy, Duration::from_secs_f64(cli.stall_timeout))
    };
    run_interruptible("tprox", "", run_repeatedly(&cases, &options, cli))?
}

/// Runs the selection `--repeat` times (once by default) and, when repeated, sums up each
/// case's failure rate.
async fn run_repeatedly(
    cases: &[&'static crate::Case],
    options: &RunOptions,
    cli: &Cli,
) -> error::Result {
    if cli.repeat == 1 {
        return run(cases, options, cli).await.map(|(summary, _)| summary);
    }
    let mut failures = vec![0u32; cases.len()];
    let mut worst = Conclusion::Passed;
    for i in 0..cli.repeat {
        let options = RunOptions {
            seed: options.seed.wrapping_add(u64::from(i)),
            ..options.clone()
        };
        if cli.format == Format::Human {
            say(format_args!("\n# run {} of {}", i + 1, cli.repeat));
        }
        let (conclusion, reports) = run(cases, &options, cli).await?;
        if conclusion == Conclusion::Failed {
            worst = Conclusion::Failed;
        }
        for (count, report) in failures.iter_mut().zip(&reports) {
            if !Verdict::of(report, cli.strict).is_success() {
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
    Ok(worst)
}

async fn run(
    cases: &[&'static crate::Case],
    options: &RunOptions,
    cli: &Cli,
) -> error::Result<(Conclusion, Vec<crate::report::CaseReport>)> {
    let rerun = rerun_template(cli, options.seed);
    let human = cli.format == Format::Human;
    if human {
        say(format_args!(
            "tprox {}: testing {}{} (stall timeout {} s, seed {}, {} case(s))",
            env!("CARGO_PKG_VERSION"),
            options.proxy.label,
            options
                .front
                .as_ref()
                .map(|front| format!(" through its {front} front"))
                .unwrap_or_default(),
            options.stall.as_secs_f64(),
            options.seed,
            cases.len()
        ));
    }
    let started = SystemTime::now();
    match runner::preflight(options).await {
        Err(e) => return Err(Error::Setup(format!("setup failed: {e}"))),
        Ok(Dialing::OnClientData) => eprintln!(
            "tprox: note: the proxy opens its connection to the destination only after the client \
             sends data. connect/server-first judges that (R8); the other cases let the client \
             speak first (each trace says so)."
        ),
        Ok(Dialing::OnAccept) => {}
    }
    // With a machine format on stdout, the human lines go nowhere; the status line stays on
    // stderr.
    let sink: Box<dyn Write> = if human {
        Box::new(std::io::stdout())
    } else {
        Box::new(std::io::sink())
    };
    let notes = match &cli.profile {
        Some(name) => crate::profiles::find(name).map_or(&[][..], |p| p.notes),
        None => &[],
    };
    let mut reporter = HumanReporter::new(sink, cli.verbose, cli.strict, cases.len())
        .with_rerun(rerun)
        .with_notes(notes);
    let reports = runner::run(cases, options, &mut reporter)
        .await
        .map_err(|e| Error::Setup(format!("setup failed: {e}")))?;
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
        std::fs::write(path, formats::render(*format, &info, &reports))
            .map_err(|e| Error::output("the report", path, e))?;
    }
    Ok((Conclusion::failed_if(!summary.is_success()), reports))
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
    if cli.stall_timeout != defaults::STALL.as_secs_f64() {
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
    if let Some(front) = &cli.front {
        // Shown with the password masked: a report is no place for it.
        parts.extend(["--front".into(), shell_quote(&front.to_string())]);
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

pub(super) fn list() {
    for case in catalogue(true) {
        let front = if case.rules.contains(&rules::Rule::R13) {
            " (with --front)"
        } else {
            ""
        };
        say(format_args!(
            "{:<24} {:<12} {:<6}  {}{front}",
            case.id,
            rules::list(case.rules),
            case.level,
            case.name
        ));
    }
}

pub(super) fn print_rules() {
    for rule in rules::Rule::ALL {
        let cases: Vec<&str> = catalogue(true)
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
