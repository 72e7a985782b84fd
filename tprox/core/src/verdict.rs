//! The one verdict type: what a case's run means for the proxy. Every reporter, the libtest
//! adaptor, the compatibility matrix, the gradebook and the report formats take a case's verdict
//! from here, so that "flaky", "warning" and "failed" mean the same everywhere.

use serde::{Deserialize, Serialize};

use crate::case::Level;
use crate::outcome::Outcome;
use crate::report::CaseReport;

/// A case's verdict. Serialized as its lowercase name (`"pass"`, `"warn"` ...), the form the
/// gradebook and the compatibility matrix have always written.
///
/// The variants' order is the order of a merge: a verdict seen in any run of a repeated
/// measurement wins over those before it (a failure over a warning over a pass).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Passed at the first attempt.
    Pass,
    /// A SHOULD case failed, and the run is not `--strict`: reported, not a failure.
    Warn,
    /// A MUST case failed, or a SHOULD case under `--strict`.
    Fail,
    /// Failed, then passed on a retry: not a failure, but never reported as a plain pass.
    Flaky,
    /// The case could not run on this machine (it said why); the same for every proxy.
    Skip,
}

impl Verdict {
    /// The verdict of one case's report. `strict` makes a failed SHOULD case a failure.
    pub fn of(report: &CaseReport, strict: bool) -> Verdict {
        Verdict::judge(
            &report.outcome,
            report.flaky.is_some(),
            report.case.level,
            strict,
        )
    }

    /// The verdict of an outcome: `retried` when it passed only on a retry.
    pub fn judge(outcome: &Outcome, retried: bool, level: Level, strict: bool) -> Verdict {
        match outcome {
            Outcome::Pass if retried => Verdict::Flaky,
            Outcome::Pass => Verdict::Pass,
            Outcome::Skip(_) => Verdict::Skip,
            Outcome::Fail(_) if level == Level::Should && !strict => Verdict::Warn,
            Outcome::Fail(_) => Verdict::Fail,
        }
    }

    /// False only for [`Verdict::Fail`]: a warning, a flaky pass and a skip do not fail a run.
    pub fn is_success(self) -> bool {
        self != Verdict::Fail
    }

    /// The name JSON carries: `pass`, `warn`, `fail`, `flaky`, `skip`.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
            Verdict::Flaky => "flaky",
            Verdict::Skip => "skip",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Failure;

    #[test]
    fn a_failed_should_case_warns_unless_strict() {
        let failed = Outcome::Fail(Failure::new("x", "y"));
        assert_eq!(
            Verdict::judge(&failed, false, Level::Should, false),
            Verdict::Warn
        );
        assert_eq!(
            Verdict::judge(&failed, false, Level::Should, true),
            Verdict::Fail
        );
        assert_eq!(
            Verdict::judge(&failed, false, Level::Must, false),
            Verdict::Fail
        );
        assert_eq!(
            Verdict::judge(&Outcome::Pass, true, Level::Must, true),
            Verdict::Flaky
        );
        assert!(Verdict::Warn.is_success() && Verdict::Skip.is_success());
        assert!(!Verdict::Fail.is_success());
    }

    #[test]
    fn verdicts_serialize_as_the_gradebook_always_wrote_them() {
        let text = serde_json::to_string(&[Verdict::Pass, Verdict::Flaky, Verdict::Fail]).unwrap();
        assert_eq!(text, r#"["pass","flaky","fail"]"#);
    }
}
