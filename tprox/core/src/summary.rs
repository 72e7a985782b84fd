//! What a finished run adds up to, and the text that explains one failure: shared by every
//! reporter (the command line's, the libtest adaptor's, the report formats').

use crate::outcome::Outcome;
use crate::report::CaseReport;
use crate::rules;
use crate::verdict::Verdict;

/// Counts of a finished run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Cases that passed at the first attempt.
    pub passed: usize,
    /// Cases that failed (SHOULD cases only under `--strict`).
    pub failed: usize,
    /// Cases that could not run on this machine (they said why).
    pub skipped: usize,
    /// SHOULD cases that failed without `--strict`: reported, not counted as failures.
    pub warnings: usize,
    /// Cases that failed, then passed on a retry: reported as flaky, not as passed, and not
    /// counted as failures.
    pub flaky: usize,
    /// Of the failed cases, those that tprox's survival check around the body failed (the
    /// proxy forwarded nothing before the case, or had died or stopped serving after it):
    /// counted apart, since one such bug fails every case it happens in whatever the case's
    /// own rules.
    pub survival: usize,
}

impl Summary {
    /// Counts each report under its [`Verdict`].
    pub fn of(reports: &[CaseReport], strict: bool) -> Self {
        let mut summary = Summary::default();
        for report in reports {
            let count = match Verdict::of(report, strict) {
                Verdict::Pass => &mut summary.passed,
                Verdict::Flaky => &mut summary.flaky,
                Verdict::Skip => &mut summary.skipped,
                Verdict::Warn => &mut summary.warnings,
                Verdict::Fail => &mut summary.failed,
            };
            *count += 1;
            if Verdict::of(report, strict) == Verdict::Fail && report.survival.is_some() {
                summary.survival += 1;
            }
        }
        summary
    }

    /// True when no case failed (warnings, flaky passes and skips do not fail a run).
    pub fn is_success(&self) -> bool {
        self.failed == 0
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

    /// The line that counts the survival check's failures apart, when there are any.
    pub fn survival_line(&self) -> Option<String> {
        (self.survival > 0).then(|| {
            format!(
                "{} of the {} failed case(s) failed tprox's survival check (a plain echo before and after every case): the proxy forwarded nothing, died or stopped serving; their own rules may hold",
                self.survival, self.failed
            )
        })
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
    if let Some(check) = report.survival {
        field(
            "charged to",
            &match check {
                crate::report::SurvivalCheck::Before => format!(
                    "{}: the survival echo before the case failed, so the case itself did not run",
                    check.rule(case)
                ),
                crate::report::SurvivalCheck::After { .. } => format!(
                    "{}: tprox's survival check after the case failed",
                    check.rule(case)
                ),
            },
        );
    }
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

    fn report(
        case: &'static crate::Case,
        failed: bool,
        survival: Option<crate::report::SurvivalCheck>,
    ) -> CaseReport {
        let outcome = if failed {
            Outcome::Fail(crate::Failure::new("x", "y"))
        } else {
            Outcome::Pass
        };
        CaseReport {
            survival,
            ..CaseReport::of(case, outcome)
        }
    }

    #[test]
    fn survival_failures_are_counted_apart_and_charged_to_their_own_rule() {
        use crate::cases::{resources::FDS, shutdown::ONE_WAY};
        use crate::report::SurvivalCheck::{After, Before};
        use crate::rules::Rule;
        let reports = [
            report(&ONE_WAY, true, None),
            report(&ONE_WAY, true, Some(After { body_failed: false })),
            report(&ONE_WAY, true, Some(After { body_failed: true })),
            report(&FDS, true, Some(Before)),
            report(&FDS, false, None),
        ];
        let summary = Summary::of(&reports, false);
        assert_eq!(
            (summary.failed, summary.survival, summary.passed),
            (4, 3, 1)
        );
        assert_eq!(
            summary.line(),
            "1 passed, 4 failed",
            "the closing line is unchanged"
        );
        assert!(summary
            .survival_line()
            .is_some_and(|line| line.starts_with("3 of the 4 failed case(s)")));
        assert_eq!(Summary::of(&reports[..1], false).survival_line(), None);
        assert_eq!(reports[0].failed_rules(), vec![Rule::R5]);
        assert_eq!(reports[1].failed_rules(), vec![Rule::R11]);
        assert_eq!(reports[2].failed_rules(), vec![Rule::R5, Rule::R11]);
        assert_eq!(
            reports[3].failed_rules(),
            vec![Rule::R1],
            "the case never ran"
        );
        assert!(reports[4].failed_rules().is_empty());
        assert!(failure_details(&reports[1], None, false).contains("charged to  R11"));
    }

    #[test]
    fn a_udp_forwarders_survival_failures_are_charged_to_the_udp_rules() {
        use crate::report::SurvivalCheck::{After, Before};
        use crate::rules::Rule;
        let sizes = crate::cases::UDP_CATALOGUE
            .iter()
            .find(|case| case.id == "udp/sizes")
            .unwrap();
        assert_eq!(
            report(sizes, true, Some(After { body_failed: false })).failed_rules(),
            vec![Rule::R19]
        );
        assert_eq!(
            report(sizes, true, Some(After { body_failed: true })).failed_rules(),
            vec![Rule::R16, Rule::R19]
        );
        let before = report(sizes, true, Some(Before));
        assert_eq!(before.failed_rules(), vec![Rule::R16]);
        assert!(failure_details(&before, None, false).contains("charged to  R16"));
    }
}
