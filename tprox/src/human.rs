//! The command line's reporter: the original tester's output, one line per case and the details
//! under each failure, with a live status line where a person watches.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;

use crate::event::{Event, Reporter};
use crate::expect::{Expectations, Finding};
use crate::outcome::Outcome;
use crate::report::CaseReport;
use crate::summary::{failure_details, Summary};
use crate::verdict::Verdict;

/// The original tester's output: one line per case, details under each failure.
pub struct HumanReporter<W: Write> {
    out: W,
    verbose: bool,
    strict: bool,
    /// The command that reruns one case; `{id}` stands for the case id.
    rerun: Option<String>,
    progress: Option<ProgressBar>,
    running: Vec<&'static str>,
    /// The profile's known deviations: each reason is shown under the failure it explains.
    notes: Option<Arc<Expectations>>,
    /// The expectations the run is judged against (`--expect`): each case's line then says
    /// whether its result was expected, so a reader sees the regression among the known
    /// failures where it happens.
    judged: Option<Arc<Expectations>>,
}

impl<W: Write> HumanReporter<W> {
    pub fn new(out: W, verbose: bool, strict: bool, total: usize) -> Self {
        // A live status line only where a person watches; logs get plain lines.
        let progress =
            crate::progress::bar(total as u64, "{spinner} [{pos}/{len}] {elapsed} {wide_msg}")
                .filter(|_| !verbose);
        if let Some(bar) = &progress {
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        HumanReporter {
            out,
            verbose,
            strict,
            rerun: None,
            progress,
            running: Vec::new(),
            notes: None,
            judged: None,
        }
    }

    /// Shows, under each failure a profile's file explains, its reason.
    pub fn with_notes(mut self, notes: Option<Arc<Expectations>>) -> Self {
        self.notes = notes;
        self
    }

    /// Marks each case's result against the expectations the run is judged by.
    pub fn judged_by(mut self, expect: Option<Arc<Expectations>>) -> Self {
        self.judged = expect;
        self
    }

    /// Shows, under every failure, the command that reruns just that case.
    pub fn with_rerun(mut self, template: String) -> Self {
        self.rerun = Some(template);
        self
    }

    /// Prints `text`, which may quote a proxy's output: its control characters are escaped.
    fn print(&mut self, text: &str) {
        let text = crate::terminal::printable(text);
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
        if let Some(line) = summary.survival_line() {
            text.push_str(&line);
            text.push('\n');
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
}

impl<W: Write> Reporter for HumanReporter<W> {
    fn report(&mut self, event: Event<'_>) {
        match event {
            Event::CaseStarted(case) => {
                self.running.push(case.id);
                self.update_status();
            }
            Event::CaseFinished(report) => self.case_finished(report),
        }
    }
}

impl<W: Write> HumanReporter<W> {
    fn case_finished(&mut self, report: &CaseReport) {
        self.running.retain(|id| *id != report.case.id);
        if let Some(bar) = &self.progress {
            bar.inc(1);
        }
        self.update_status();
        let case = report.case;
        let mut text = String::new();
        let verdict = match (Verdict::of(report, self.strict), &report.outcome) {
            (Verdict::Flaky, _) => {
                format!("flaky (failed, then passed on attempt {})", report.attempts)
            }
            (Verdict::Pass, _) => "passed".to_string(),
            (Verdict::Skip, Outcome::Skip(reason)) => format!("skipped ({reason})"),
            (Verdict::Skip, _) => "skipped".to_string(),
            (Verdict::Warn, _) => "warning (SHOULD)".to_string(),
            (Verdict::Fail, _) => "failed".to_string(),
        };
        let finding = self
            .judged
            .as_ref()
            .map(|expect| expect.finding(case.id, Verdict::of(report, self.strict)));
        let mark = match &finding {
            Some(Finding::KnownDeviation(_)) => " (known deviation)",
            Some(Finding::Regression) => " (REGRESSION: expected to pass)",
            Some(Finding::UnexpectedPass(_)) => " (UNEXPECTED PASS: expected to fail)",
            _ => "",
        };
        text.push_str(&format!("{}: {verdict}{mark}\n", case.name));
        if let Some(first) = &report.flaky {
            text.push_str(&format!("    first failure: expected {}\n", first.expected));
            text.push_str(&format!("                   observed {}\n", first.observed));
        }
        // The profile's reason, or the expectations file's: one of them, said once.
        let note = self.notes.as_ref().and_then(|notes| notes.get(case.id));
        if let Outcome::Fail(_) = &report.outcome {
            let rerun = self.rerun.as_ref().map(|r| r.replace("{id}", case.id));
            text.push_str(&failure_details(report, rerun.as_deref(), !self.verbose));
            if let Some(entry) = note {
                text.push_str(&format!("    {:<12}{}\n", "proxy note", entry.reason));
            }
        }
        if let Some(Finding::KnownDeviation(reason) | Finding::UnexpectedPass(reason)) = &finding {
            if note.is_none() || !matches!(report.outcome, Outcome::Fail(_)) {
                text.push_str(&format!("    {:<12}{reason}\n", "expected"));
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
