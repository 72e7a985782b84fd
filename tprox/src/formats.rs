//! Machine-readable reports of a finished run: JSON (a versioned schema, documented in
//! `tprox/report.schema.json`), JUnit XML for CI systems, and TAP version 13.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::expect::{Expectations, Finding};
use crate::outcome::Outcome;
use crate::report::{CaseReport, SurvivalCheck};
use crate::rules;
use crate::summary::Summary;
use crate::verdict::Verdict;

/// The version of the JSON report's schema; raised on any incompatible change.
pub const JSON_VERSION: u32 = 1;

/// What a report says about the run as a whole.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The proxy command, as shown to people.
    pub proxy: String,
    pub stall: Duration,
    pub seed: u64,
    pub started: SystemTime,
    /// Whether failed SHOULD cases count as failures.
    pub strict: bool,
    /// What the run was judged against (`--expect`): a known deviation is then marked as
    /// expected, and an unexpected pass as a failure.
    pub expect: Option<std::sync::Arc<Expectations>>,
    /// The run's other settings, as the report states them: a diff of two runs says which
    /// differ, since a verdict that changed with them may not be the proxy's doing.
    pub settings: Value,
}

impl RunInfo {
    /// What a report says about a run made with `options`.
    pub fn of(
        options: &crate::runner::RunOptions,
        started: SystemTime,
        strict: bool,
        expect: Option<std::sync::Arc<Expectations>>,
    ) -> Self {
        RunInfo {
            proxy: options.proxy.label.clone(),
            stall: options.stall,
            seed: options.seed,
            started,
            strict,
            expect,
            settings: json!({
                "jobs": options.jobs,
                "retries": options.retries,
                "shared": options.shared,
                "front": options.front.as_ref().map(|front| front.to_string()),
                "proxy_protocol": options.proxy_protocol.map(|send| send.to_string()),
                "startup_timeout_s": options.startup_timeout.as_secs_f64(),
                "bulk_bytes": options.scale.bulk_bytes,
                "chain_length": options.scale.chain_length,
                "connections": options.scale.connections,
            }),
        }
    }

    /// A case's finding against the expectations, when there are some.
    fn finding(&self, report: &CaseReport) -> Option<Finding> {
        let verdict = Verdict::of(report, self.strict);
        self.expect
            .as_ref()
            .map(|e| e.finding(report.case.id, verdict))
    }

    /// Whether a case fails the run: a failure that is not a known deviation, or an
    /// unexpected pass.
    fn counts_as_failure(&self, report: &CaseReport) -> bool {
        match self.finding(report) {
            Some(finding) => !finding.is_success(),
            None => counts_as_failure(report, self.strict),
        }
    }
}

/// A report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
    Junit,
    Tap,
}

impl Format {
    pub const NAMES: &'static str = "human, json, junit, tap";

    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "human" | "text" => Ok(Format::Human),
            "json" => Ok(Format::Json),
            "junit" | "xml" => Ok(Format::Junit),
            "tap" => Ok(Format::Tap),
            _ => Err(format!(
                "unknown report format '{name}' (known: {})",
                Self::NAMES
            )),
        }
    }

    /// Parses an `--output` value: `FORMAT:FILE`, or a FILE whose extension names the format
    /// (`.json`, `.xml`, `.tap`, `.txt`).
    pub fn parse_output(spec: &str) -> Result<(Format, PathBuf), String> {
        if let Some((name, file)) = spec.split_once(':') {
            if let Ok(format) = Format::parse(name) {
                if file.is_empty() {
                    return Err(format!("--output {spec}: no file name after '{name}:'"));
                }
                return Ok((format, PathBuf::from(file)));
            }
        }
        let path = PathBuf::from(spec);
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Format::Json,
            Some("xml") => Format::Junit,
            Some("tap") => Format::Tap,
            Some("txt") | Some("log") => Format::Human,
            _ => {
                return Err(format!(
                    "--output {spec}: cannot tell the format from the file name; write FORMAT:FILE \
                     (formats: {}) or use .json, .xml, .tap or .txt",
                    Self::NAMES
                ))
            }
        };
        Ok((format, path))
    }
}

/// Renders a finished run in a machine format. (Human output is streamed by
/// [`crate::human::HumanReporter`] instead.)
pub fn render(format: Format, info: &RunInfo, reports: &[CaseReport]) -> String {
    match format {
        Format::Json => {
            serde_json::to_string_pretty(&json_value(info, reports))
                .expect("a JSON value serializes")
                + "\n"
        }
        Format::Junit => junit(info, reports),
        Format::Tap => tap(info, reports),
        Format::Human => human_text(info, reports),
    }
}

/// The JSON report as a value; see `tprox/report.schema.json`.
pub fn json_value(info: &RunInfo, reports: &[CaseReport]) -> Value {
    let summary = Summary::of(reports, info.strict);
    let cases: Vec<Value> = reports
        .iter()
        .map(|r| {
            let message = match &r.outcome {
                Outcome::Pass => Value::Null,
                Outcome::Fail(f) => {
                    json!({ "expected": f.expected, "observed": f.observed, "hint": f.hint })
                }
                Outcome::Skip(reason) => json!({ "skipped": reason }),
            };
            json!({
                "id": r.case.id,
                "name": r.case.name,
                "level": r.case.level.to_string(),
                "rules": r.case.rules.iter().map(|rule| rule.to_string()).collect::<Vec<_>>(),
                "outcome": r.outcome.label(),
                "counts_as_failure": info.counts_as_failure(r),
                "expected": info.finding(r).map(|finding| match finding {
                    Finding::AsExpected => json!({ "finding": "as-expected" }),
                    Finding::KnownDeviation(reason) => json!({ "finding": "known-deviation", "reason": reason }),
                    Finding::KnownSkip(reason) => json!({ "finding": "known-skip", "reason": reason }),
                    Finding::Regression => json!({ "finding": "regression" }),
                    Finding::UnexpectedPass(reason) => json!({ "finding": "unexpected-pass", "reason": reason }),
                }),
                "duration_s": r.duration.as_secs_f64(),
                "figures": r.figures,
                "attempts": r.attempts,
                "survival": r.survival.map(|check| match check {
                    SurvivalCheck::Before => "before",
                    SurvivalCheck::After { .. } => "after",
                }),
                "flaky": r.flaky.as_ref().map(|f| json!({ "expected": f.expected, "observed": f.observed, "hint": f.hint })),
                "message": message,
                "trace": r.trace,
                "proxy_output": r.proxy_output,
            })
        })
        .collect();
    json!({
        "format": "tprox-report",
        "version": JSON_VERSION,
        "tprox": env!("CARGO_PKG_VERSION"),
        "proxy": info.proxy,
        "stall_timeout_s": info.stall.as_secs_f64(),
        "seed": info.seed,
        "started": humantime::format_rfc3339_seconds(info.started).to_string(),
        "strict": info.strict,
        "settings": info.settings,
        "cases": cases,
        "summary": {
            "total": reports.len(),
            "passed": summary.passed,
            "failed": summary.failed,
            "skipped": summary.skipped,
            "warnings": summary.warnings,
            "flaky": summary.flaky,
            "survival": summary.survival,
            "expectations": info.expect.as_ref().map(|e| {
                let judged = e.judge(reports, info.strict);
                json!({
                    "known_deviations": judged.count(|f| matches!(f, Finding::KnownDeviation(_))),
                    "regressions": judged.regressions(),
                    "unexpected_passes": judged.unexpected_passes(),
                })
            }),
        },
    })
}

fn counts_as_failure(report: &CaseReport, strict: bool) -> bool {
    !Verdict::of(report, strict).is_success()
}

/// One line per fact of a failure, for the formats that carry plain text.
fn failure_text(report: &CaseReport) -> String {
    match &report.outcome {
        Outcome::Fail(f) => {
            let mut text = format!(
                "rules: {}\nrequirement: {}\nexpected: {}\nobserved: {}\n",
                rules::list(report.case.rules),
                report.case.requirement,
                f.expected,
                f.observed
            );
            if let Some(hint) = &f.hint {
                text.push_str(&format!("usual cause: {hint}\n"));
            }
            text
        }
        _ => String::new(),
    }
}

fn junit(info: &RunInfo, reports: &[CaseReport]) -> String {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new("tprox");
    for r in reports {
        let status = match (info.finding(r), &r.outcome) {
            // What JUnit's readers understand as "not run, and not a failure", with why.
            (Some(Finding::KnownDeviation(reason)), _) => {
                let mut status = TestCaseStatus::skipped();
                status.set_message(format!("expected failure: {reason}"));
                status
            }
            (Some(Finding::UnexpectedPass(reason)), _) => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status
                    .set_message(format!(
                        "unexpected pass: expected to fail ({reason}); remove its entry from \
                         the expectations file"
                    ))
                    .set_type("unexpected-pass");
                status
            }
            (_, Outcome::Pass) => TestCaseStatus::success(),
            (_, Outcome::Skip(reason)) => {
                let mut status = TestCaseStatus::skipped();
                status.set_message(reason.clone());
                status
            }
            (_, Outcome::Fail(f)) if counts_as_failure(r, info.strict) => {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status
                    .set_message(f.expected.clone())
                    .set_type(r.case.level.to_string())
                    .set_description(failure_text(r));
                status
            }
            // A SHOULD failure without --strict: reported, but not a failure.
            (_, Outcome::Fail(_)) => TestCaseStatus::success(),
        };
        let mut case = TestCase::new(r.case.id, status);
        case.set_classname(r.case.id.split('/').next().unwrap_or("tprox"));
        case.set_time(r.duration);
        if let Outcome::Fail(_) = &r.outcome {
            if !counts_as_failure(r, info.strict) {
                case.set_system_out(format!("warning (SHOULD case):\n{}", failure_text(r)));
            }
        }
        if let Some(first) = &r.flaky {
            case.set_system_out(format!(
                "flaky: failed, then passed on attempt {}\nfirst failure: expected {}; observed {}\n",
                r.attempts, first.expected, first.observed
            ));
        }
        suite.add_test_case(case);
    }
    let mut report = Report::new(format!("tprox: {}", info.proxy));
    report.add_test_suite(suite);
    report.to_string().expect("the JUnit report serializes")
}

fn tap(info: &RunInfo, reports: &[CaseReport]) -> String {
    let quote = |text: &str| serde_json::to_string(text).expect("a string serializes");
    let mut out = format!("TAP version 13\n1..{}\n", reports.len());
    out.push_str(&format!(
        "# tprox {} testing {} (seed {})\n",
        env!("CARGO_PKG_VERSION"),
        info.proxy,
        info.seed
    ));
    for (i, r) in reports.iter().enumerate() {
        let n = i + 1;
        let title = format!("{} - {}", r.case.id, r.case.name);
        match (info.finding(r), &r.outcome) {
            (Some(Finding::UnexpectedPass(reason)), _) => out.push_str(&format!(
                "not ok {n} {title}\n  ---\n  unexpected_pass: {}\n  ...\n",
                quote(&format!(
                    "expected to fail ({reason}); remove its entry from the expectations file"
                ))
            )),
            (_, Outcome::Pass) if r.flaky.is_some() => out.push_str(&format!(
                "ok {n} {title} (flaky: passed on attempt {})\n",
                r.attempts
            )),
            (_, Outcome::Pass) => out.push_str(&format!("ok {n} {title}\n")),
            (_, Outcome::Skip(reason)) => {
                out.push_str(&format!("ok {n} {title} # SKIP {reason}\n"))
            }
            (finding, Outcome::Fail(f)) => {
                // TAP's TODO: a failure its consumers expect, not counted against the run.
                let directive = match finding {
                    Some(Finding::KnownDeviation(reason)) => {
                        format!(" # TODO expected failure: {reason}")
                    }
                    _ if counts_as_failure(r, info.strict) => String::new(),
                    _ => " # TODO SHOULD case: a warning, not a failure".into(),
                };
                out.push_str(&format!("not ok {n} {title}{directive}\n  ---\n"));
                out.push_str(&format!("  rules: {}\n", quote(&rules::list(r.case.rules))));
                out.push_str(&format!("  expected: {}\n", quote(&f.expected)));
                out.push_str(&format!("  observed: {}\n", quote(&f.observed)));
                if let Some(hint) = &f.hint {
                    out.push_str(&format!("  hint: {}\n", quote(hint)));
                }
                out.push_str(&format!(
                    "  duration_s: {:.3}\n  ...\n",
                    r.duration.as_secs_f64()
                ));
            }
        }
    }
    out
}

fn human_text(info: &RunInfo, reports: &[CaseReport]) -> String {
    let mut out = format!(
        "tprox {}: {} (seed {})\n",
        env!("CARGO_PKG_VERSION"),
        info.proxy,
        info.seed
    );
    for r in reports {
        out.push_str(&format!(
            "{}: {}\n",
            r.case.name,
            match Verdict::of(r, info.strict) {
                Verdict::Flaky => "flaky",
                Verdict::Pass => "passed",
                Verdict::Skip => "skipped",
                Verdict::Fail => "failed",
                Verdict::Warn => "warning (SHOULD)",
            }
        ));
        out.push_str(&crate::summary::failure_details(r, None, true));
    }
    out.push_str(&Summary::of(reports, info.strict).line());
    out.push('\n');
    out
}
