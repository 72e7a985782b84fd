//! The main job: the catalogue (or a selection of it) run against one proxy, once or
//! `--repeat` times, reported as the options ask.

use std::io::Write;
use std::time::{Duration, SystemTime};

use super::*;
use std::sync::Arc;

use crate::expect::{entry_toml, Expectations, Finding, Judgement};
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
    let catalogue = catalogue(front.is_some());
    let expect = match &cli.expect {
        // A file that is to be written from this run may not exist yet.
        Some(path) if cli.update_expect && !path.exists() => Some(Expectations::default()),
        Some(path) => {
            let ids: Vec<&str> = catalogue.iter().map(|c| c.id).collect();
            Some(Expectations::load(path, &ids).map_err(Error::Usage)?)
        }
        None => None,
    };
    let (mut cases, unmatched) = select::select(&catalogue, &only, &skip);
    if let Some(expect) = &expect {
        let skipped: Vec<&str> = expect.skipped().collect();
        cases.retain(|case| !skipped.contains(&case.id));
    }
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
    let expect = expect.map(std::sync::Arc::new);
    run_interruptible("tprox", "", run_repeatedly(&cases, &options, cli, expect))?
}

/// Runs the selection `--repeat` times (once by default) and, when repeated, sums up each
/// case's failure rate.
async fn run_repeatedly(
    cases: &[&'static crate::Case],
    options: &RunOptions,
    cli: &Cli,
    expect: Option<Arc<Expectations>>,
) -> error::Result {
    if cli.repeat == 1 {
        return run(cases, options, cli, expect)
            .await
            .map(|(summary, _)| summary);
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
        let (conclusion, reports) = run(cases, &options, cli, expect.clone()).await?;
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
    expect: Option<Arc<Expectations>>,
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
        expect: expect.clone(),
    };
    if !human {
        let _ =
            std::io::stdout().write_all(formats::render(cli.format, &info, &reports).as_bytes());
    }
    for (format, path) in &cli.output {
        std::fs::write(path, formats::render(*format, &info, &reports))
            .map_err(|e| Error::output("the report", path, e))?;
    }
    let conclusion = match (&expect, &cli.expect) {
        (Some(expect), Some(path)) if cli.update_expect => {
            let updated = expect.updated(&reports, cli.strict);
            std::fs::write(path, updated.to_toml())
                .map_err(|e| Error::output("the expectations file", path, e))?;
            eprintln!(
                "tprox: wrote {}: {} case(s) expected not to pass",
                path.display(),
                updated.entries.len()
            );
            Conclusion::Passed
        }
        (Some(expect), Some(path)) => {
            let judged = expect.judge(&reports, cli.strict);
            eprint!("{}", judgement_text(expect, &judged, path));
            Conclusion::failed_if(!judged.is_success())
        }
        _ => Conclusion::failed_if(!summary.is_success()),
    };
    Ok((conclusion, reports))
}

/// What a run judged against its expectations file says: how many known deviations it saw,
/// and every regression and unexpected pass with what to do about it.
fn judgement_text(expect: &Expectations, judged: &Judgement, path: &std::path::Path) -> String {
    let known = judged.count(|f| matches!(f, Finding::KnownDeviation(_) | Finding::KnownSkip(_)));
    let mut text = format!(
        "tprox: judged against {}: {known} known deviation(s) as expected",
        path.display()
    );
    let regressions = judged.regressions();
    let unexpected = judged.unexpected_passes();
    if regressions.is_empty() && unexpected.is_empty() {
        text.push_str(", nothing else failed\n");
        return text;
    }
    text.push('\n');
    for id in regressions {
        text.push_str(&format!(
            "tprox: REGRESSION: {id} was expected to pass and failed (its report says why)\n"
        ));
    }
    for id in unexpected {
        let entry = expect.get(id).expect("an unexpected pass has an entry");
        text.push_str(&format!(
            "tprox: UNEXPECTED PASS: {id} was expected to fail ({}) and passed: remove these \
             lines from {} (or run with --update-expect):\n{}",
            entry.reason,
            path.display(),
            entry_toml(id, entry)
        ));
    }
    text
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
