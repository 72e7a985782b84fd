//! Reporters turn case reports into output. The runner calls them; they never run anything.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::case::{Case, Level, Outcome};
use crate::rules;
use crate::runner::CaseReport;

/// Receives a run's events. `case_finished` comes in catalogue order.
pub trait Reporter {
    fn case_started(&mut self, _case: &Case) {}
    fn case_finished(&mut self, report: &CaseReport);
}

/// Counts of a finished run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// SHOULD cases that failed without `--strict`: reported, not counted as failures.
    pub warnings: usize,
}

impl Summary {
    pub fn of(reports: &[CaseReport], strict: bool) -> Self {
        let mut summary = Summary::default();
        for report in reports {
            match (&report.outcome, report.case.level) {
                (Outcome::Pass, _) => summary.passed += 1,
                (Outcome::Skip(_), _) => summary.skipped += 1,
                (Outcome::Fail(_), Level::Should) if !strict => summary.warnings += 1,
                (Outcome::Fail(_), _) => summary.failed += 1,
            }
        }
        summary
    }

    /// The closing line, exactly `N passed, M failed` (`, K skipped` when any).
    pub fn line(&self) -> String {
        let mut line = format!("{} passed, {} failed", self.passed, self.failed);
        if self.skipped > 0 {
            line.push_str(&format!(", {} skipped", self.skipped));
        }
        line
    }
}

/// The original tester's output: one line per case, details under each failure.
pub struct HumanReporter<W: Write> {
    out: W,
    verbose: bool,
    strict: bool,
    /// The command that reruns one case; `{id}` stands for the case id.
    rerun: Option<String>,
    progress: Option<ProgressBar>,
    total: usize,
    running: Vec<&'static str>,
}

impl<W: Write> HumanReporter<W> {
    pub fn new(out: W, verbose: bool, strict: bool, total: usize) -> Self {
        // A live status line only where a person watches; logs get plain lines.
        let progress = (!verbose && std::io::stderr().is_terminal()).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{pos}/{len}] {elapsed} {wide_msg}")
                    .expect("the template is valid"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        HumanReporter {
            out,
            verbose,
            strict,
            rerun: None,
            progress,
            total,
            running: Vec::new(),
        }
    }

    /// Shows, under every failure, the command that reruns just that case.
    pub fn with_rerun(mut self, template: String) -> Self {
        self.rerun = Some(template);
        self
    }

    fn print(&mut self, text: &str) {
        let out = &mut self.out;
        let mut write = || {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        };
        match &self.progress {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    /// Prints the closing lines and clears the status line.
    pub fn finish(&mut self, summary: &Summary) {
        if let Some(bar) = self.progress.take() {
            bar.finish_and_clear();
        }
        let mut text = String::new();
        if summary.warnings > 0 {
            text.push_str(&format!(
                "{} SHOULD case(s) failed: reported as warnings (use --strict to fail on them)\n",
                summary.warnings
            ));
        }
        text.push_str(&summary.line());
        text.push('\n');
        self.print(&text);
    }

    fn update_status(&self) {
        if let Some(bar) = &self.progress {
            bar.set_message(format!("running {}", self.running.join(", ")));
        }
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

impl<W: Write> Reporter for HumanReporter<W> {
    fn case_started(&mut self, case: &Case) {
        self.running.push(case.id);
        self.update_status();
    }

    fn case_finished(&mut self, report: &CaseReport) {
        self.running.retain(|id| *id != report.case.id);
        if let Some(bar) = &self.progress {
            bar.inc(1);
        }
        self.update_status();
        let case = report.case;
        let mut text = String::new();
        let verdict = match (&report.outcome, case.level) {
            (Outcome::Pass, _) => "passed".to_string(),
            (Outcome::Skip(reason), _) => format!("skipped ({reason})"),
            (Outcome::Fail(_), Level::Should) if !self.strict => "warning (SHOULD)".to_string(),
            (Outcome::Fail(_), _) => "failed".to_string(),
        };
        text.push_str(&format!("{}: {verdict}\n", case.name));
        if let Outcome::Fail(failure) = &report.outcome {
            let field = |text: &mut String, name: &str, value: &str| {
                text.push_str(&format!("    {name:<12}{value}\n"));
            };
            field(
                &mut text,
                "case",
                &format!("{} ({}, {})", case.id, rules::list(case.rules), case.level),
            );
            field(&mut text, "requirement", case.requirement);
            field(&mut text, "expected", &failure.expected);
            field(&mut text, "observed", &failure.observed);
            if let Some(hint) = &failure.hint {
                field(&mut text, "usual cause", hint);
            }
            if let Some(rerun) = &self.rerun {
                field(&mut text, "rerun", &rerun.replace("{id}", case.id));
            }
            if !self.verbose && !report.proxy_output.trim().is_empty() {
                text.push_str("    proxy output (last lines):\n");
                for line in report
                    .proxy_output
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    text.push_str(&format!("      | {line}\n"));
                }
            }
        }
        if self.verbose {
            text.push_str(&format!(
                "    trace of {} ({:.2} s):\n",
                case.id,
                report.duration.as_secs_f64()
            ));
            for line in &report.trace {
                text.push_str(&format!("      {line}\n"));
            }
            if !report.proxy_output.trim().is_empty() {
                text.push_str("    proxy output (last lines):\n");
                for line in report.proxy_output.lines() {
                    text.push_str(&format!("      | {line}\n"));
                }
            }
        }
        self.print(&text);
    }
}
