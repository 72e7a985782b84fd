//! The main job: the catalogue (or a selection of it) run against one proxy, once or
//! `--repeat` times, reported as the options ask.

use std::io::Write;
use std::path::PathBuf;
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

/// Everything a run of the suite needs, made from the command line once: the runs below
/// never see the raw options.
struct Settings {
    cases: Vec<&'static crate::Case>,
    /// The first run's options; a repeated run changes only the seed.
    options: RunOptions,
    /// The profile the proxy was started from: its known deviations are shown under the
    /// failures they explain.
    profile: Option<&'static crate::profiles::Profile>,
    /// What the run is judged against (`--expect`), with its file.
    expect: Option<(Arc<Expectations>, PathBuf)>,
    /// `--update-expect`: the file is written from the run instead.
    update_expect: bool,
    strict: bool,
    verbose: bool,
    format: Format,
    outputs: Vec<(Format, PathBuf)>,
    repeat: u32,
    /// The command that reruns one case, `{id}` and `{seed}` standing for its id and the
    /// run's seed.
    rerun: String,
}

/// Runs the suite as `cli` says.
pub(super) fn run_suite(cli: &Cli) -> error::Result {
    // A profile's configuration is written to a scratch directory that lives as long as the run.
    let mut scratch = None;
    let settings = settings(cli, &mut scratch)?;
    run_interruptible("tprox", "", run_repeatedly(&settings))?
}

/// The settings of `cli`'s run, checked; the profile's scratch directory goes into `scratch`.
fn settings(cli: &Cli, scratch: &mut Option<tempfile::TempDir>) -> error::Result<Settings> {
    let profile = match &cli.profile {
        Some(name) => Some(crate::profiles::find(name).map_err(Error::Usage)?),
        None => None,
    };
    // A profile that speaks the PROXY protocol brings its mode; the others speak none.
    let proxy_protocol = match (profile, cli.proxy_protocol) {
        (Some(profile), given) => match (profile.proxy_protocol(), given) {
            (own, None) => own,
            (Some(own), Some(given)) if own == given => Some(own),
            (own, Some(given)) => {
                return Err(Error::Usage(format!(
                    "--proxy-protocol {given} with --profile {}: that profile speaks {}; the \
                     profiles that speak it: {}",
                    profile.name,
                    own.map_or("no PROXY protocol".to_string(), |own| format!(
                        "the PROXY protocol as {own}"
                    )),
                    crate::profiles::PROFILES
                        .iter()
                        .filter(|p| p.proxy_protocol.is_some())
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        },
        (None, given) => given,
    };
    // A front profile brings its front; any other profile is a plain forwarder.
    let front = match (profile, &cli.front) {
        (Some(profile), given) => {
            let name = profile.name;
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
    let mut scratch_dir = || {
        let dir = crate::profiles::scratch_dir().map_err(Error::Setup)?;
        let path = dir.path().to_path_buf();
        *scratch = Some(dir);
        Ok::<_, Error>(path)
    };
    let proxy = match (profile, cli.reference, cli.proxy.is_empty()) {
        (None, true, _) if cli.front.is_some() => ProxyCommand::reference_front(
            cli.front.as_ref().expect("checked above"),
            &scratch_dir()?,
        ),
        (None, false, false) if cli.front.is_some() => ProxyCommand::new_front(&cli.proxy),
        (Some(profile), _, _) => profile.command(&scratch_dir()?),
        (None, true, _) => ProxyCommand::reference(),
        (None, false, false) => ProxyCommand::new(&cli.proxy),
        (None, false, true) => Err(
            "no proxy to test: give the proxy command (tprox ./tcpproxy), --reference for the \
             built-in reference proxy, or --profile NAME; see tprox --help"
                .into(),
        ),
    };
    let mut proxy = proxy.map_err(Error::Usage)?;
    if cli.udp && cli.reference {
        proxy = proxy.arg("--udp");
    }
    // A UDP profile brings --udp; a TCP one cannot take it.
    let udp = match profile {
        Some(profile) if cli.udp && !profile.udp => {
            return Err(Error::Usage(format!(
                "--udp with --profile {}: that profile is a TCP proxy; the UDP forwarders among \
                 the profiles: {}",
                profile.name,
                crate::profiles::PROFILES
                    .iter()
                    .filter(|p| p.udp)
                    .map(|p| p.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
        Some(profile) => profile.udp,
        None => cli.udp,
    };
    if let (Some(mode), true) = (proxy_protocol, cli.reference) {
        for arg in mode.reference_args() {
            proxy = proxy.arg(&arg);
        }
    }
    let parse = |patterns: &[String]| {
        patterns
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<Vec<_>, _>>()
    };
    let only = parse(&cli.only).map_err(Error::Usage)?;
    let skip = parse(&cli.skip).map_err(Error::Usage)?;
    let options = RunOptions {
        startup_timeout: Duration::from_secs_f64(cli.startup_timeout),
        jobs: cli.jobs.into(),
        seed: cli.seed.unwrap_or_else(|| fastrand::u64(..1_000_000_000)),
        scale: Scale {
            connections: cli.connections as usize,
            bulk_bytes: cli.bulk_kib as usize * 1024,
            ..Scale::default()
        },
        echo_proxy_output: cli.verbose,
        shared: cli.shared,
        retries: cli.retries,
        front: front.map(Arc::new),
        proxy_protocol,
        udp,
        ..RunOptions::new(proxy, Duration::from_secs_f64(cli.stall_timeout))
    };
    let catalogue = options.cases();
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
    Ok(Settings {
        cases,
        rerun: rerun_template(cli, &options),
        options,
        profile,
        expect: expect.map(Arc::new).zip(cli.expect.clone()),
        update_expect: cli.update_expect,
        strict: cli.strict,
        verbose: cli.verbose,
        format: cli.format,
        outputs: cli.output.clone(),
        repeat: cli.repeat,
    })
}

/// Runs the selection `--repeat` times (once by default) and, when repeated, sums up each
/// case's failure rate.
async fn run_repeatedly(settings: &Settings) -> error::Result {
    let repeat = settings.repeat;
    if repeat == 1 {
        return run(settings, &settings.options)
            .await
            .map(|(summary, _)| summary);
    }
    let cases = &settings.cases;
    let mut failures = vec![0u32; cases.len()];
    let mut worst = Conclusion::Passed;
    for i in 0..repeat {
        let options = RunOptions {
            seed: settings.options.seed.wrapping_add(u64::from(i)),
            ..settings.options.clone()
        };
        if settings.format == Format::Human {
            say(format_args!("\n# run {} of {repeat}", i + 1));
        }
        let (conclusion, reports) = run(settings, &options).await?;
        if conclusion == Conclusion::Failed {
            worst = Conclusion::Failed;
        }
        for (count, report) in failures.iter_mut().zip(&reports) {
            if !Verdict::of(report, settings.strict).is_success() {
                *count += 1;
            }
        }
    }
    let mut text = format!("\nFailure rate per case over {repeat} runs:\n");
    for (case, count) in cases.iter().zip(&failures).filter(|(_, &count)| count > 0) {
        text.push_str(&format!(
            "  {:<24} failed {count} of {repeat} runs ({:.0}%)\n",
            case.id,
            f64::from(*count) * 100.0 / f64::from(repeat)
        ));
    }
    if failures.iter().all(|&count| count == 0) {
        text.push_str("  no case failed in any run\n");
    }
    eprint!("{text}");
    Ok(worst)
}

/// One run of the selection with `options` (the settings' own, or a repeat's).
async fn run(
    settings: &Settings,
    options: &RunOptions,
) -> error::Result<(Conclusion, Vec<crate::report::CaseReport>)> {
    let cases = &settings.cases;
    let strict = settings.strict;
    let human = settings.format == Format::Human;
    if human {
        say(format_args!(
            "tprox {}: testing {}{}{} (stall timeout {} s, seed {}, {} case(s))",
            env!("CARGO_PKG_VERSION"),
            options.proxy.label,
            options
                .front
                .as_ref()
                .map(|front| format!(" through its {front} front"))
                .unwrap_or_default(),
            options
                .proxy_protocol
                .map(|mode| mode.described())
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
    let expect = settings.expect.as_ref().map(|(expect, _)| expect.clone());
    let mut reporter = HumanReporter::new(sink, settings.verbose, strict, cases.len())
        .with_rerun(settings.rerun.replace("{seed}", &options.seed.to_string()))
        .with_notes(settings.profile.map(|p| Arc::new(p.expectations())))
        .judged_by(expect.clone().filter(|_| !settings.update_expect));
    let reports = runner::run(cases, options, &mut reporter)
        .await
        .map_err(|e| Error::Setup(format!("setup failed: {e}")))?;
    let summary = Summary::of(&reports, strict);
    reporter.finish(&summary);
    let info = RunInfo::of(options, started, strict, expect);
    if !human {
        let _ = std::io::stdout()
            .write_all(formats::render(settings.format, &info, &reports).as_bytes());
    }
    for (format, path) in &settings.outputs {
        std::fs::write(path, formats::render(*format, &info, &reports))
            .map_err(|e| Error::output("the report", path, e))?;
    }
    let conclusion = match &settings.expect {
        Some((expect, path)) if settings.update_expect => {
            let updated = expect.updated(&reports, strict);
            std::fs::write(path, updated.to_toml())
                .map_err(|e| Error::output("the expectations file", path, e))?;
            eprintln!(
                "tprox: wrote {}: {} case(s) expected not to pass",
                path.display(),
                updated.entries.len()
            );
            Conclusion::Passed
        }
        Some((expect, path)) => {
            let judged = expect.judge(&reports, strict);
            eprint!("{}", judgement_text(expect, &judged, path));
            Conclusion::failed_if(!judged.is_success())
        }
        None => Conclusion::failed_if(!summary.is_success()),
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

/// The command line that reruns one case with the same settings: `{id}` and `{seed}` stand
/// for the case's id and the run's seed. Only what differs from the defaults is spelt out.
fn rerun_template(cli: &Cli, options: &RunOptions) -> String {
    let mut parts = vec![
        "tprox".to_string(),
        "--only".into(),
        "{id}".into(),
        "--seed".into(),
        "{seed}".into(),
    ];
    if options.stall != defaults::STALL {
        parts.extend([
            "--stall-timeout".into(),
            options.stall.as_secs_f64().to_string(),
        ]);
    }
    let scale = Scale::default();
    if options.scale.connections != scale.connections {
        parts.extend([
            "--connections".into(),
            options.scale.connections.to_string(),
        ]);
    }
    if options.scale.bulk_bytes != scale.bulk_bytes {
        parts.extend([
            "--bulk-kib".into(),
            (options.scale.bulk_bytes / 1024).to_string(),
        ]);
    }
    if cli.strict {
        parts.push("--strict".into());
    }
    if options.shared {
        parts.push("--shared".into());
    }
    if let Some(front) = &cli.front {
        // Shown with the password masked: a report is no place for it.
        parts.extend(["--front".into(), shell_quote(&front.to_string())]);
    }
    if let Some(send) = &options.proxy_protocol {
        parts.extend(["--proxy-protocol".into(), send.to_string()]);
    }
    if options.udp {
        parts.push("--udp".into());
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
    for case in tprox_core::cases::all() {
        let front = if case.rules.contains(&rules::Rule::R13) {
            " (with --front)"
        } else if case.rules.iter().any(|r| rules::Rule::UDP.contains(r)) {
            " (with --udp)"
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
        let cases: Vec<&str> = tprox_core::cases::all()
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
