//! What one case's run produced: the record every reporter, format and verdict reads.

use std::time::Duration;

use crate::case::Case;
use crate::outcome::{Failure, Outcome};
use crate::rules::Rule;

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// The case.
    pub case: &'static Case,
    /// How it ended (after retries, the last attempt's outcome).
    pub outcome: Outcome,
    /// How long it took.
    pub duration: Duration,
    /// The case's own events, time-stamped.
    pub trace: Vec<String>,
    /// The last lines the case's proxy printed.
    pub proxy_output: String,
    /// Set when the case passed only on a retry: the first failure. Such a case is reported as
    /// flaky, not as passed.
    pub flaky: Option<Failure>,
    /// Attempts made (1 unless retries were allowed and needed).
    pub attempts: u32,
    /// Set when tprox's survival check around the body failed (the case failed then, whatever
    /// its body found): which one. Kept apart from the body's verdict so that reports can say
    /// how many failures are the proxy's death or silence rather than the case's own rules.
    pub survival: Option<SurvivalCheck>,
    /// What the case measured on its way to the verdict, for comparing runs.
    pub figures: Vec<crate::figure::Figure>,
}

/// tprox's survival check: a plain echo through the proxy before every case body, and after
/// it the proxy's exit status and another echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SurvivalCheck {
    /// The echo before the body failed: the body never ran. The proxy forwards nothing (R1;
    /// a UDP forwarder's datagrams, R16), or an earlier case of a shared run broke it.
    Before,
    /// After the body, the proxy had exited or no longer served an echo (R11; a UDP
    /// forwarder, R19).
    After {
        /// Whether the body had failed too (its failure is then in the report as well).
        body_failed: bool,
    },
}

impl SurvivalCheck {
    /// The rule a failure of this check around `case` shows broken: a TCP proxy's R1 or R11,
    /// a UDP forwarder's R16 (it forwards nothing) or R19 (a peer's behaviour stopped it).
    pub fn rule(self, case: &crate::Case) -> Rule {
        let udp = case.rules.iter().any(|rule| Rule::UDP.contains(rule));
        match (self, udp) {
            (SurvivalCheck::Before, false) => Rule::R1,
            (SurvivalCheck::After { .. }, false) => Rule::R11,
            (SurvivalCheck::Before, true) => Rule::R16,
            (SurvivalCheck::After { .. }, true) => Rule::R19,
        }
    }
}

impl CaseReport {
    /// A report of `case` that ended with `outcome` and nothing else to tell: no time taken,
    /// no trace, one attempt. The report of a case that never ran (its proxy did not start,
    /// the time ran out), and a report for a test to judge.
    pub fn of(case: &'static crate::Case, outcome: Outcome) -> Self {
        CaseReport {
            case,
            outcome,
            duration: std::time::Duration::ZERO,
            trace: Vec::new(),
            proxy_output: String::new(),
            flaky: None,
            attempts: 1,
            survival: None,
            figures: Vec::new(),
        }
    }

    /// The rules this report's failure is charged to: the survival check's rule when that
    /// check failed (with the case's own rules too when the body failed as well), else the
    /// case's rules. Empty when the case did not fail.
    pub fn failed_rules(&self) -> Vec<Rule> {
        if !matches!(self.outcome, Outcome::Fail(_)) {
            return Vec::new();
        }
        match self.survival {
            Some(check @ SurvivalCheck::After { body_failed: true }) => {
                let mut rules = self.case.rules.to_vec();
                let rule = check.rule(self.case);
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
                rules
            }
            Some(check) => vec![check.rule(self.case)],
            None => self.case.rules.to_vec(),
        }
    }
}
