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
    /// Cases that failed, then passed on a retry: reported as flaky, not as passed, and not
    /// counted as failures.
    pub flaky: usize,
}

impl Summary {
    pub fn of(reports: &[CaseReport], strict: bool) -> Self {
        let mut summary = Summary::default();
        for report in reports {
            match (&report.outcome, report.case.level) {
                (Outcome::Pass, _) if report.flaky.is_some() => summary.flaky += 1,
                (Outcome::Pass, _) => summary.passed += 1,
                (Outcome::Skip(_), _) => summary.skipped += 1,
                (Outcome::Fail(_), Level::Should) if !strict => summary.warnings += 1,
                (Outcome::Fail(_), _) => summary.failed += 1,
            }
        }
        summary
    }

    /// The closing line, exactly `N passed, M failed` (`, K skipped` and `, F flaky` when
    /// any).
    pub fn line(&self) -> String {
        let mut line = format!("{} passed, {} failed", self.passed, self.failed);
        if self.skipped > 0 {
            line.push_str(&format!(", {} skipped", self.skipped));
        }
        if self.flaky > 0 {
            line.push_str(&format!(", {} flaky", self.flaky));
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
    /// The profile's notes on where the proxy's documented behaviour differs.
    notes: &'static [crate::profiles::Note],
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
            notes: &[],
        }
    }

    /// Shows, under each failure a note explains, that note.
    pub fn with_notes(mut self, notes: &'static [crate::profiles::Note]) -> Self {
        self.notes = notes;
        self
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
            (Outcome::Pass, _) if report.flaky.is_some() => {
                format!("flaky (failed, then passed on attempt {})", report.attempts)
            }
            (Outcome::Pass, _) => "passed".to_string(),
            (Outcome::Skip(reason), _) => format!("skipped ({reason})"),
            (Outcome::Fail(_), Level::Should) if !self.strict => "warning (SHOULD)".to_string(),
            (Outcome::Fail(_), _) => "failed".to_string(),
        };
        text.push_str(&format!("{}: {verdict}\n", case.name));
        if let Some(first) = &report.flaky {
            text.push_str(&format!("    first failure: expected {}\n", first.expected));
            text.push_str(&format!("                   observed {}\n", first.observed));
        }
        if let Outcome::Fail(_) = &report.outcome {
            let rerun = self.rerun.as_ref().map(|r| r.replace("{id}", case.id));
            text.push_str(&failure_details(report, rerun.as_deref(), !self.verbose));
            for note in self.notes.iter().filter(|note| note.explains(case.id)) {
                text.push_str(&format!("    {:<12}{}\n", "proxy note", note.text));
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

/// The indented block shown under a failed case: which case, what it required, what was
/// expected and observed, the usual cause, how to rerun it, and optionally the proxy's last
/// words.
pub fn failure_details(report: &CaseReport, rerun: Option<&str>, proxy_output: bool) -> String {
    let Outcome::Fail(failure) = &report.outcome else {
        return String::new();
    };
    let case = report.case;
    let mut text = String::new();
    let mut field = |name: &str, value: &str| {
        text.push_str(&format!("    {name:<12}{value}\n"));
    };
    field(
        "case",
        &format!("{} ({}, {})", case.id, rules::list(case.rules), case.level),
    );
    field("requirement", case.requirement);
    field("expected", &failure.expected);
    field("observed", &failure.observed);
    if let Some(hint) = &failure.hint {
        field("usual cause", hint);
    }
    if let Some(rerun) = rerun {
        field("rerun", rerun);
    }
    if proxy_output && !report.proxy_output.trim().is_empty() {
        text.push_str("    proxy output (last lines):\n");
        let lines: Vec<&str> = report.proxy_output.lines().collect();
        for line in &lines[lines.len().saturating_sub(5)..] {
            text.push_str(&format!("      | {line}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closing_line_is_exactly_the_original_form() {
        let summary = Summary {
            passed: 9,
            failed: 1,
            ..Summary::default()
        };
        assert_eq!(summary.line(), "9 passed, 1 failed");
        let summary = Summary {
            passed: 7,
            skipped: 2,
            warnings: 1,
            ..Summary::default()
        };
        assert_eq!(summary.line(), "7 passed, 0 failed, 2 skipped");
        let summary = Summary {
            passed: 5,
            flaky: 1,
            ..Summary::default()
        };
        assert_eq!(summary.line(), "5 passed, 0 failed, 1 flaky");
    }
}
