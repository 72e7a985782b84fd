//! Expected results: the cases a proxy is known not to pass, kept in a file of its repository
//! (`tprox-expect.toml`), so that its CI tells a regression from a known deviation.
//!
//! Most real proxies deviate somewhere on purpose (no stall timeout by design, both directions
//! ended at the first EOF). Without a record of that, CI has two bad choices: skip the cases and
//! lose the check that the deviation stays what it was, or live with a red build. With one, a
//! run is judged against it: a case expected to pass that fails is a regression; a case
//! expected to fail that fails is a known deviation; a case expected to fail that passes is an
//! unexpected pass, which fails the run too, so that the record is kept true.
//!
//! The file, one entry per case that is not expected to pass:
//!
//! ```toml
//! ["timeout/idle"]
//! expect = "fail"                       # or "skip": not run at all
//! reason = "no stall timeout by design" # said wherever the case is reported
//! rule = "R3"                           # optional: the rule it deviates from
//! flaky = true                          # optional: a pass is accepted too
//! ```

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::report::CaseReport;
use crate::verdict::Verdict;

/// What an entry expects of its case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expected {
    /// The case runs and fails.
    Fail,
    /// The case is not run.
    Skip,
}

/// One case's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// What the case is expected to do.
    pub expect: Expected,
    /// Why: shown wherever the case is reported, so a reader of a green build sees what it
    /// accepted.
    pub reason: String,
    /// The rule the proxy deviates from, when one says it (`R3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Whether a pass is accepted too: the deviation shows only sometimes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flaky: bool,
}

/// A file's entries, by case id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    /// The entries, by case id, in id order (the file's order when written).
    pub entries: BTreeMap<String, Expectation>,
}

/// How one case's result compares with what was expected of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Passed (or did what passing allows: a warning, a flaky pass, a skip), as expected.
    AsExpected,
    /// Failed, as its entry says; with the entry's reason.
    KnownDeviation(String),
    /// Not run, as its entry says; with the entry's reason.
    KnownSkip(String),
    /// Expected to pass, and failed.
    Regression,
    /// Expected to fail, and passed: the entry should go.
    UnexpectedPass(String),
}

impl Finding {
    /// Whether this case leaves the run green.
    pub fn is_success(&self) -> bool {
        !matches!(self, Finding::Regression | Finding::UnexpectedPass(_))
    }
}

/// A run judged against its expectations.
#[derive(Debug, Clone, Default)]
pub struct Judgement {
    /// Each case's finding, in the run's order.
    pub findings: Vec<(&'static str, Finding)>,
}

impl Judgement {
    /// Whether the run matches its expectations: no regression and no unexpected pass.
    pub fn is_success(&self) -> bool {
        self.findings.iter().all(|(_, f)| f.is_success())
    }

    /// The cases with this kind of finding.
    pub fn count(&self, kind: fn(&Finding) -> bool) -> usize {
        self.findings.iter().filter(|(_, f)| kind(f)).count()
    }

    /// The ids of the cases expected to pass that failed.
    pub fn regressions(&self) -> Vec<&'static str> {
        self.ids(|f| matches!(f, Finding::Regression))
    }

    /// The ids of the cases expected to fail that passed.
    pub fn unexpected_passes(&self) -> Vec<&'static str> {
        self.ids(|f| matches!(f, Finding::UnexpectedPass(_)))
    }

    fn ids(&self, kind: fn(&Finding) -> bool) -> Vec<&'static str> {
        self.findings
            .iter()
            .filter(|(_, f)| kind(f))
            .map(|(id, _)| *id)
            .collect()
    }

    /// The finding of one case, if it ran.
    pub fn of(&self, id: &str) -> Option<&Finding> {
        self.findings.iter().find(|(i, _)| *i == id).map(|(_, f)| f)
    }
}

impl Expectations {
    /// Reads an expectations file's text. `known` are the case ids that exist: an entry for
    /// any other is an error that names it (a case renamed or removed would otherwise be
    /// expected to fail forever, unseen).
    pub fn parse(text: &str, known: &[&str]) -> Result<Expectations, String> {
        let entries: BTreeMap<String, Expectation> = toml::from_str(text).map_err(|e| {
            format!(
                "{e}(each entry: [\"case/id\"] with expect = \"fail\" or \"skip\" and a reason)"
            )
        })?;
        Expectations::from_entries(entries, known)
    }

    /// Checks entries read from elsewhere (a grading file's `[expect]` table) as [`parse`]
    /// checks a file's.
    ///
    /// [`parse`]: Expectations::parse
    pub fn from_entries(
        entries: BTreeMap<String, Expectation>,
        known: &[&str],
    ) -> Result<Expectations, String> {
        if let Some(unknown) = entries.keys().find(|id| !known.contains(&id.as_str())) {
            return Err(format!(
                "an entry for \"{unknown}\", which is no case of this catalogue (renamed or \
                 removed? tprox --list shows the ids): remove it or give the case's id"
            ));
        }
        if let Some((id, _)) = entries.iter().find(|(_, e)| e.reason.trim().is_empty()) {
            return Err(format!(
                "the entry for \"{id}\" gives no reason: say why the proxy deviates, so that a \
                 reader of a green build knows what it accepted"
            ));
        }
        Ok(Expectations { entries })
    }

    /// Reads the expectations file at `path`.
    pub fn load(path: &std::path::Path, known: &[&str]) -> Result<Expectations, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the expectations file {}: {e}", path.display()))?;
        Expectations::parse(&text, known).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The entry of one case.
    pub fn get(&self, id: &str) -> Option<&Expectation> {
        self.entries.get(id)
    }

    /// The ids of the cases not to run.
    pub fn skipped(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|(_, e)| e.expect == Expected::Skip)
            .map(|(id, _)| id.as_str())
    }

    /// One case's finding, from its verdict. A warning (a SHOULD case failed, not strict)
    /// matches an entry that expects the failure, and needs none.
    pub fn finding(&self, id: &str, verdict: Verdict) -> Finding {
        let Some(entry) = self.get(id) else {
            return match verdict.is_success() {
                true => Finding::AsExpected,
                false => Finding::Regression,
            };
        };
        let reason = entry.reason.clone();
        match verdict {
            _ if entry.expect == Expected::Skip => Finding::KnownSkip(reason),
            Verdict::Fail | Verdict::Warn => Finding::KnownDeviation(reason),
            // A case that could not run here, or passed only on a retry, did not pass.
            Verdict::Skip | Verdict::Flaky => Finding::KnownDeviation(reason),
            Verdict::Pass if entry.flaky => Finding::KnownDeviation(reason),
            Verdict::Pass => Finding::UnexpectedPass(reason),
        }
    }

    /// Judges a run's reports.
    pub fn judge(&self, reports: &[CaseReport], strict: bool) -> Judgement {
        Judgement {
            findings: reports
                .iter()
                .map(|r| (r.case.id, self.finding(r.case.id, Verdict::of(r, strict))))
                .collect(),
        }
    }

    /// The expectations a run shows: an entry for each case that failed or warned (its
    /// reason kept when it had one, otherwise what was expected of it), none for a case that
    /// passed; entries of cases the run skipped or did not include are kept as they are.
    pub fn updated(&self, reports: &[CaseReport], strict: bool) -> Expectations {
        let mut entries = self.entries.clone();
        for report in reports {
            let verdict = Verdict::of(report, strict);
            let id = report.case.id;
            match verdict {
                Verdict::Pass => {
                    if !self.get(id).is_some_and(|e| e.flaky) {
                        entries.remove(id);
                    }
                    continue;
                }
                // Not judged here: what the file says stands.
                Verdict::Skip => continue,
                Verdict::Fail | Verdict::Warn | Verdict::Flaky => {}
            }
            let kept = self.get(id).filter(|e| e.expect == Expected::Fail);
            let reason = match (kept, &report.outcome) {
                (Some(e), _) => e.reason.clone(),
                (None, crate::outcome::Outcome::Fail(f)) => format!("fails: {}", f.expected),
                (None, _) => "failed once, then passed (flaky)".into(),
            };
            entries.insert(
                id.to_string(),
                Expectation {
                    expect: Expected::Fail,
                    reason,
                    rule: kept
                        .and_then(|e| e.rule.clone())
                        .or_else(|| report.case.rules.first().map(|r| r.to_string())),
                    flaky: kept.is_some_and(|e| e.flaky) || verdict == Verdict::Flaky,
                },
            );
        }
        Expectations { entries }
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        let mut text = String::from(
            "# The cases this proxy is known not to pass; tprox --expect judges a run against \
             it.\n# Each: expect = \"fail\" (or \"skip\": not run), the reason, optionally the \
             rule and flaky = true.\n",
        );
        for (id, entry) in &self.entries {
            let _ = write!(text, "\n{}", entry_toml(id, entry));
        }
        text
    }
}

/// One entry as the file writes it: the line to add to (or find in) the file.
pub fn entry_toml(id: &str, entry: &Expectation) -> String {
    let mut table = BTreeMap::new();
    table.insert(id.to_string(), entry.clone());
    toml::to_string(&table).expect("an entry serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Failure, Outcome};

    const IDS: [&str; 3] = ["echo/single", "timeout/idle", "shutdown/one-way"];

    fn report(id: &str, pass: bool) -> CaseReport {
        let case = crate::CATALOGUE.iter().find(|c| c.id == id).unwrap();
        let outcome = match pass {
            true => Outcome::Pass,
            false => Outcome::Fail(Failure::new("a stall timeout", "none")),
        };
        CaseReport::of(case, outcome)
    }

    #[test]
    fn a_run_is_judged_against_its_file_and_the_file_is_written_back_from_a_run() {
        let file = Expectations::parse(
            "[\"timeout/idle\"]\nexpect = \"fail\"\nreason = \"no stall timeout by design\"\n\
             rule = \"R3\"\n",
            &IDS,
        )
        .unwrap();
        let green = [report("echo/single", true), report("timeout/idle", false)];
        let judged = file.judge(&green, false);
        assert!(judged.is_success());
        assert_eq!(
            judged.of("timeout/idle"),
            Some(&Finding::KnownDeviation(
                "no stall timeout by design".into()
            ))
        );
        let regressed = [report("echo/single", false), report("timeout/idle", false)];
        assert_eq!(file.judge(&regressed, false).regressions(), ["echo/single"]);
        let fixed = [report("echo/single", true), report("timeout/idle", true)];
        let judged = file.judge(&fixed, false);
        assert!(!judged.is_success());
        assert_eq!(judged.unexpected_passes(), ["timeout/idle"]);

        // Written back: the reason kept, a new failure recorded, a fixed case dropped.
        let updated = file.updated(&regressed, false);
        assert_eq!(
            updated.entries["timeout/idle"],
            file.entries["timeout/idle"]
        );
        assert_eq!(updated.entries["echo/single"].expect, Expected::Fail);
        let text = updated.to_toml();
        assert_eq!(Expectations::parse(&text, &IDS).unwrap(), updated);
        assert!(file.updated(&fixed, false).entries.is_empty());
    }

    #[test]
    fn a_bad_file_is_refused_with_what_to_do() {
        let unknown = Expectations::parse(
            "[\"timeout/idled\"]\nexpect = \"fail\"\nreason = \"x\"\n",
            &IDS,
        )
        .unwrap_err();
        assert!(
            unknown.contains("\"timeout/idled\", which is no case"),
            "{unknown}"
        );
        let no_reason = Expectations::parse(
            "[\"timeout/idle\"]\nexpect = \"fail\"\nreason = \"\"\n",
            &IDS,
        )
        .unwrap_err();
        assert!(no_reason.contains("gives no reason"), "{no_reason}");
        let bad = Expectations::parse(
            "[\"timeout/idle\"]\nexpect = \"pass\"\nreason = \"x\"\n",
            &IDS,
        )
        .unwrap_err();
        assert!(bad.contains("expect = \"fail\" or \"skip\""), "{bad}");
    }
}
