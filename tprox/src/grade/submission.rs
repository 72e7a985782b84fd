//! Grading one submission: a scratch copy, the build, the cases, the points.
//!
//! Containment, from the outside in: in the kernel sandbox ([`super::sandbox`]) where there is
//! one, the build and every proxy run in the inner box ([`Jail`]) and the scratch copy is the
//! box; the submission runs in a copy of its directory (its own files are never touched, and
//! two submissions never share a build directory); the build and every proxy lead process
//! groups of their own, killed whole when done; each proxy process runs under resource limits
//! ([`crate::proxy::Limits`]); the cases together have a wall-clock limit; output is drained
//! into bounded buffers. What escapes its group is re-parented to tprox and swept (see
//! [`crate::proxy::sweep_orphans`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::config::Grading;
use super::copy::copy_tree;
use super::gradebook::{BuildResult, CaseResult, Status, Submission};
use super::limits;
use crate::event::Reporter;
use crate::formats::{self, Format, RunInfo};
use crate::harness::Scale;
use crate::outcome::Outcome;
use crate::proxy::jail::Jail;
use crate::proxy::{self, ProxyCommand, Tail};
use crate::report::CaseReport;
use crate::runner::{self, RunOptions};
use crate::verdict::Verdict;

/// A submission directory and the name it is graded under (the directory's own name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionDir {
    pub name: String,
    pub path: PathBuf,
}

/// Where one grading run keeps its files.
#[derive(Debug, Clone)]
pub struct Places {
    /// The gradebook's directory; logs go to `logs/NAME/` under it.
    pub out: PathBuf,
    /// Keep each submission's scratch copy (`scratch/NAME/`) after grading, for a look inside.
    pub keep_scratch: bool,
    /// Which run of `--repeat` this is, from the second on (the first keeps the plain places).
    pub run: Option<u32>,
}

impl Places {
    /// Where run `run` (2, 3, … of `--repeat`) keeps its files: logs under `logs/NAME/run-K/`,
    /// its own scratch copy.
    pub fn for_run(&self, run: u32) -> Places {
        Places {
            run: Some(run),
            ..self.clone()
        }
    }

    fn logs(&self, name: &str) -> PathBuf {
        let logs = self.out.join("logs").join(name);
        match self.run {
            Some(run) => logs.join(format!("run-{run}")),
            None => logs,
        }
    }
}

/// One run of one submission, as the grading loop hands it out.
#[derive(Clone, Copy)]
pub struct Run<'a> {
    pub submission: &'a SubmissionDir,
    pub grading: &'a Grading,
    pub places: &'a Places,
    /// The submission's place in the whole class (its sandbox uid is made from it).
    pub place: usize,
}

/// Builds and grades one submission without a sandbox. Never fails: whatever goes wrong is
/// the submission's score and message.
pub async fn grade(run: Run<'_>, progress: &mut (dyn Reporter + Send)) -> Submission {
    grade_in(run.submission, run.grading, run.places, None, progress).await
}

/// A row for a submission that could not be graded at all: every case not run, 0 points.
pub fn not_graded(submission: &SubmissionDir, grading: &Grading, error: String) -> Submission {
    let mut row = empty_row(submission);
    row.status = Status::DidNotStart;
    row.error = Some(error);
    row.results = not_run(grading);
    row
}

fn empty_row(submission: &SubmissionDir) -> Submission {
    Submission {
        name: submission.name.clone(),
        path: submission.path.display().to_string(),
        status: Status::Graded,
        error: None,
        total: 0.0,
        duration_s: 0.0,
        build: None,
        results: Vec::new(),
        run_totals: Vec::new(),
        limits: Vec::new(),
    }
}

fn not_run(grading: &Grading) -> Vec<CaseResult> {
    grading
        .cases
        .iter()
        .map(|(case, _)| CaseResult {
            case: case.id.to_string(),
            outcome: None,
            points: 0.0,
            message: None,
            unstable: None,
            accepted: None,
        })
        .collect()
}

/// Builds and grades one submission, in `jail` when given (then inside the sandbox's outer
/// box, where the jail's box is the scratch copy). Never fails.
pub async fn grade_in(
    submission: &SubmissionDir,
    grading: &Grading,
    places: &Places,
    jail: Option<&Jail>,
    progress: &mut (dyn Reporter + Send),
) -> Submission {
    let started = Instant::now();
    let logs = places.logs(&submission.name);
    let kept = places.out.join("scratch").join(&submission.name);
    let scratch = jail.map_or_else(|| kept.clone(), |jail| jail.box_dir.clone());
    let mut result = empty_row(submission);
    let prepared = prepare(&submission.path, &scratch, &logs, jail).await;
    if let Ok(refused) = &prepared {
        result.limits.extend(refused.iter().cloned());
    }
    let reports = match prepared {
        Err(e) => Err((Status::DidNotStart, e)),
        Ok(_) => match &grading.build {
            Some(build) => {
                let outcome = run_build(build, grading, submission, &scratch, &logs, jail).await;
                let ok = outcome.is_ok();
                result.build = Some(BuildResult {
                    ok,
                    duration_s: started.elapsed().as_secs_f64(),
                    log: logs
                        .strip_prefix(&places.out)
                        .unwrap_or(&logs)
                        .join("build.log")
                        .display()
                        .to_string(),
                });
                if let Some(jail) = jail {
                    result.limits.extend(limits::disk(jail, grading));
                }
                match outcome {
                    Ok(()) => run_cases(submission, grading, &scratch, &logs, jail, progress).await,
                    Err(e) => Err((Status::BuildFailed, e)),
                }
            }
            None => run_cases(submission, grading, &scratch, &logs, jail, progress).await,
        },
    };
    let build_log = std::fs::read_to_string(logs.join("build.log")).unwrap_or_default();
    match reports {
        Ok(reports) => {
            let outputs: Vec<&str> = reports.iter().map(|r| r.proxy_output.as_str()).collect();
            result
                .limits
                .extend(limits::named(grading, &build_log, &outputs));
            result.results = reports
                .iter()
                .zip(&grading.cases)
                .map(|(report, (case, points))| {
                    let accepted = grading.accepted.get(case.id);
                    score(report, *points, accepted.map(|e| e.reason.as_str()))
                })
                .collect();
        }
        Err((status, error)) => {
            result
                .limits
                .extend(limits::named(grading, &build_log, &[&error]));
            result.status = status;
            result.error = Some(error);
            result.results = not_run(grading);
        }
    }
    if let Some(jail) = jail {
        result.limits.extend(limits::disk(jail, grading));
    }
    result.limits.sort();
    result.limits.dedup();
    result.total = result.results.iter().map(|r| r.points).sum();
    result.duration_s = started.elapsed().as_secs_f64();
    match (jail, places.keep_scratch) {
        (None, false) => {
            let _ = tokio::fs::remove_dir_all(&scratch).await;
        }
        // The box is a tmpfs that goes with the sandbox: what is kept is copied out.
        (Some(_), true) => {
            let (from, to) = (scratch.clone(), kept.clone());
            let _ = tokio::task::spawn_blocking(move || {
                let _ = std::fs::remove_dir_all(&to);
                std::fs::create_dir_all(&to).and_then(|()| copy_tree(&from, &to))
            })
            .await;
        }
        _ => {}
    }
    result
}

/// The points and message of one case. Grading is strict: a failed SHOULD case loses its
/// points. A case whose verdict is a success (a pass, a flaky pass, a skip: tprox could not
/// check the case on this machine, the same for every submission) earns them, as does a
/// case whose failure the course accepts (`accepted`: the grading file's reason).
fn score(report: &CaseReport, points: f64, accepted: Option<&str>) -> CaseResult {
    let verdict = Verdict::of(report, true);
    let message = match (&report.outcome, &report.flaky) {
        (Outcome::Pass, Some(first)) => Some(format!(
            "passed on attempt {}; the first attempt failed:\nexpected: {}\nobserved: {}",
            report.attempts, first.expected, first.observed
        )),
        (Outcome::Pass, None) => None,
        (Outcome::Skip(reason), _) => Some(format!("not checked here: {reason}")),
        (Outcome::Fail(failure), _) => {
            let mut message = format!(
                "expected: {}\nobserved: {}",
                failure.expected, failure.observed
            );
            if let Some(hint) = &failure.hint {
                message.push_str(&format!("\nusual cause: {hint}"));
            }
            Some(message)
        }
    };
    let message = match (accepted, message) {
        (Some(reason), Some(message)) if !verdict.is_success() => Some(format!(
            "accepted by the course ({reason}), so its points are kept:\n{message}"
        )),
        (_, message) => message,
    };
    let result = CaseResult {
        case: report.case.id.to_string(),
        outcome: Some(verdict),
        points: 0.0,
        message,
        unstable: None,
        accepted: accepted.map(String::from),
    };
    CaseResult {
        points: if result.earns() { points } else { 0.0 },
        ..result
    }
}

/// A fresh scratch copy of the submission, and its log directory. In a sandbox the scratch
/// directory is the box (an empty tmpfs already), handed to the box's uid once filled.
async fn prepare(
    source: &Path,
    scratch: &Path,
    logs: &Path,
    jail: Option<&Jail>,
) -> Result<Vec<String>, String> {
    let (source, scratch, logs) = (source.to_owned(), scratch.to_owned(), logs.to_owned());
    let jail = jail.cloned();
    tokio::task::spawn_blocking(move || {
        let fresh = match jail {
            Some(_) => vec![&logs],
            None => vec![&scratch, &logs],
        };
        for dir in fresh {
            if dir.exists() {
                std::fs::remove_dir_all(dir)
                    .map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
            }
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let refused = copy_tree(&source, &scratch).map_err(|e| {
            format!(
                "cannot copy the submission {} to its scratch directory {}: {e}",
                source.display(),
                scratch.display()
            )
        })?;
        if let Some(jail) = jail {
            jail.give_box()
                .map_err(|e| format!("cannot hand the sandbox's box to its uid: {e}"))?;
        }
        Ok(refused)
    })
    .await
    .map_err(|e| format!("preparing the scratch directory failed: {e}"))?
}

/// How much of the build's output is kept for its log, in bytes.
const BUILD_OUTPUT_KEPT: usize = 64 * 1024;

/// Runs the build command in the scratch copy; its output goes to `build.log`.
async fn run_build(
    build: &super::config::Build,
    grading: &Grading,
    submission: &SubmissionDir,
    scratch: &Path,
    logs: &Path,
    jail: Option<&Jail>,
) -> Result<(), String> {
    let script = ["-c".to_string(), build.command.clone()];
    let mut cmd = match jail {
        Some(jail) => {
            let mut cmd = jail
                .command("sh", &script, scratch, grading.sandbox.build_network)
                .map_err(|e| format!("cannot prepare the sandbox for the build: {e}"))?;
            grading.build_limits.install(&mut cmd);
            cmd
        }
        None => {
            let mut cmd = tokio::process::Command::new("sh");
            cmd.args(&script);
            cmd
        }
    };
    cmd.current_dir(scratch)
        .env("TPROX_SUBMISSION", &submission.path)
        .env("TPROX_SHARE", share_var(grading))
        .env(
            "TPROX_SCRATCH",
            jail.map_or_else(
                || scratch.display().to_string(),
                |j| j.inside(&scratch.display().to_string()),
            ),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = proxy::spawn_group(&mut cmd)
        .map_err(|e| format!("cannot run the build command with sh: {e}"))?;
    let pgid = Pid::from_raw(child.id().expect("a just-spawned child has a pid") as i32);
    let output = proxy::capture_output(&mut child, Tail::new(400, BUILD_OUTPUT_KEPT), None);
    let waited = tokio::time::timeout(build.timeout, child.wait()).await;
    // Whatever the build left running in its group goes with it.
    let _ = killpg(pgid, Signal::SIGKILL);
    let verdict = match waited {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("the build failed ({status})")),
        Ok(Err(e)) => Err(format!("the build could not be waited for: {e}")),
        Err(_) => {
            let _ = child.wait().await;
            Err(format!(
                "the build did not finish within {} and was stopped",
                humantime::format_duration(build.timeout)
            ))
        }
    };
    proxy::unregister(pgid);
    // Let the drainers take the last words.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (text, printed) = {
        let tail = output.lock().unwrap_or_else(|e| e.into_inner());
        (tail.text(), tail.printed())
    };
    let flood = match printed > BUILD_OUTPUT_KEPT as u64 {
        true => format!(
            "\n{}{:.1} MB; only its last lines are kept",
            limits::BUILD_FLOOD,
            printed as f64 / 1e6
        ),
        false => String::new(),
    };
    let log = format!(
        "$ {}\n{text}{flood}\n{} after {:.1} s\n",
        build.command,
        match &verdict {
            Ok(()) => "build succeeded".to_string(),
            Err(e) => e.clone(),
        },
        started.elapsed().as_secs_f64()
    );
    let _ = tokio::fs::write(logs.join("build.log"), log).await;
    verdict.map_err(|e| {
        let last: Vec<&str> = text.lines().rev().take(15).collect();
        let last: Vec<&str> = last.into_iter().rev().collect();
        if last.is_empty() {
            e
        } else {
            format!("{e}; its last lines:\n{}", last.join("\n"))
        }
    })
}

/// Starts the submission's proxy for each graded case, under the grading file's limits.
async fn run_cases(
    submission: &SubmissionDir,
    grading: &Grading,
    scratch: &Path,
    logs: &Path,
    jail: Option<&Jail>,
    progress: &mut (dyn Reporter + Send),
) -> Result<Vec<CaseReport>, (Status, String)> {
    let place = |word: &String| {
        word.replace("{submission}", &submission.path.to_string_lossy())
            .replace("{scratch}", &scratch.to_string_lossy())
    };
    let words: Vec<String> = grading.start.iter().map(place).collect();
    let proxy = match grading.front {
        Some(_) => ProxyCommand::new_front(&words),
        None => ProxyCommand::new(&words),
    };
    let mut proxy = proxy
        .map_err(|e| (Status::DidNotStart, e))?
        .in_dir(scratch.to_path_buf());
    if let Some(jail) = jail {
        proxy = proxy.in_jail(jail.clone());
    }
    let mut scale = Scale::default();
    if let Some(connections) = grading.connections {
        scale.connections = connections;
    }
    if let Some(kib) = grading.bulk_kib {
        scale.bulk_bytes = kib * 1024;
    }
    let options = RunOptions {
        startup_timeout: grading.startup_timeout,
        jobs: grading.jobs,
        seed: grading.seed,
        scale,
        retries: grading.retries,
        limits: grading.limits,
        deadline: Some(Instant::now() + grading.time_limit),
        keep_going: true,
        front: grading.front.clone().map(std::sync::Arc::new),
        proxy_protocol: grading.proxy_protocol,
        udp: grading.udp,
        ..RunOptions::new(proxy, grading.stall)
    };
    let info = RunInfo::of(&options, SystemTime::now(), true, None);
    runner::preflight(&options)
        .await
        .map_err(|e| (Status::DidNotStart, e.to_string()))?;
    let cases: Vec<_> = grading.cases.iter().map(|(case, _)| *case).collect();
    let reports = runner::run(&cases, &options, progress)
        .await
        .map_err(|e| (Status::DidNotStart, e.to_string()))?;
    // The full report, with traces and the proxy's output, for whoever looks into a failure.
    let _ = tokio::fs::write(
        logs.join("report.json"),
        formats::render(Format::Json, &info, &reports),
    )
    .await;
    Ok(reports)
}

/// `$TPROX_SHARE`: the grading file's shared places, colon-separated like PATH.
fn share_var(grading: &Grading) -> String {
    let shared: Vec<String> = grading
        .sandbox
        .share
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    shared.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Failure;

    fn report(pass: bool) -> CaseReport {
        let case = crate::CATALOGUE
            .iter()
            .find(|c| c.id == "timeout/idle")
            .unwrap();
        let outcome = match pass {
            true => Outcome::Pass,
            false => Outcome::Fail(Failure::new("an idle pair stays open", "EOF")),
        };
        CaseReport::of(case, outcome)
    }

    /// A failure the course accepts keeps its points and says why; without the entry it loses
    /// them; a pass earns them either way.
    #[test]
    fn an_accepted_failure_keeps_its_points_and_says_why() {
        let accepted = score(&report(false), 2.0, Some("not taught this year"));
        assert_eq!(accepted.points, 2.0);
        assert_eq!(accepted.outcome, Some(Verdict::Fail));
        let message = accepted.message.unwrap();
        assert!(
            message.starts_with("accepted by the course (not taught this year)"),
            "{message}"
        );
        assert_eq!(score(&report(false), 2.0, None).points, 0.0);
        assert_eq!(score(&report(true), 2.0, Some("x")).points, 2.0);
        assert_eq!(score(&report(true), 2.0, Some("x")).message, None);
    }
}
