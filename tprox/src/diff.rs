//! `tprox diff OLD.json NEW.json`: what changed between two runs' JSON reports, for a pull
//! request's check against the main branch's last run: the cases whose verdict changed, and
//! which of those are regressions (a case that did not count as a failure and now does).
//!
//! A verdict is read from each case's `outcome`, `counts_as_failure` and `flaky`, so a report
//! judged against an expectations file (`--expect`) compares as it was judged: a known
//! deviation is not a failure there.

use std::path::Path;

use serde_json::{json, Value};

/// One case as a report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// pass, warn, fail, flaky, skip, or "known deviation".
    verdict: String,
    /// Whether it fails the run.
    failing: bool,
}

/// A case whose verdict differs between the two reports (or that is in only one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The case id.
    pub id: String,
    /// Its verdict in the old report, if it ran there.
    pub before: Option<String>,
    /// Its verdict in the new report, if it ran there.
    pub after: Option<String>,
    /// Whether it fails the new run and did not fail the old one.
    pub regression: bool,
}

/// The two reports compared.
#[derive(Debug, Clone)]
pub struct Diff {
    /// The reports' own words on their runs: tprox version, proxy, seed, stall timeout.
    old: Value,
    new: Value,
    /// The cases that changed, in the new report's order, then those only in the old one.
    pub changes: Vec<Change>,
}

impl Diff {
    /// Whether something regressed: the diff's exit status.
    pub fn is_success(&self) -> bool {
        !self.changes.iter().any(|c| c.regression)
    }

    /// Reads and compares two JSON reports (`tprox --format json`, `--output FILE.json`).
    pub fn read(old: &Path, new: &Path) -> Result<Diff, String> {
        let (old, new) = (read_report(old)?, read_report(new)?);
        Ok(Diff::of(old, new))
    }

    fn of(old: Value, new: Value) -> Diff {
        let (before, after) = (cases(&old), cases(&new));
        let mut changes = Vec::new();
        for (id, seen) in &after {
            let was = before.iter().find(|(i, _)| i == id).map(|(_, s)| s);
            if was != Some(seen) {
                changes.push(Change {
                    id: id.clone(),
                    before: was.map(|s| s.verdict.clone()),
                    after: Some(seen.verdict.clone()),
                    regression: seen.failing && !was.is_some_and(|w| w.failing),
                });
            }
        }
        for (id, seen) in &before {
            if !after.iter().any(|(i, _)| i == id) {
                changes.push(Change {
                    id: id.clone(),
                    before: Some(seen.verdict.clone()),
                    after: None,
                    regression: false,
                });
            }
        }
        Diff { old, new, changes }
    }

    fn regressions(&self) -> usize {
        self.changes.iter().filter(|c| c.regression).count()
    }

    /// For people: one line per change.
    pub fn human(&self) -> String {
        let mut text = format!(
            "tprox diff: {} → {}: {} case(s) changed, {} regression(s)\n",
            describe(&self.old),
            describe(&self.new),
            self.changes.len(),
            self.regressions()
        );
        for c in &self.changes {
            text.push_str(&format!(
                "  {:<10} {:<28} {} → {}\n",
                if c.regression { "REGRESSED" } else { "changed" },
                c.id,
                c.before.as_deref().unwrap_or("(not run)"),
                c.after.as_deref().unwrap_or("(not run)")
            ));
        }
        text
    }

    /// For a pull request comment or `$GITHUB_STEP_SUMMARY`: a heading and a table.
    pub fn markdown(&self) -> String {
        let mut text = format!(
            "### tprox: {} case(s) changed, {} regression(s)\n\n{} → {}\n\n",
            self.changes.len(),
            self.regressions(),
            escape(&describe(&self.old)),
            escape(&describe(&self.new))
        );
        if self.changes.is_empty() {
            text.push_str("No case changed its verdict.\n");
            return text;
        }
        text.push_str("| case | before | after | |\n|---|---|---|---|\n");
        for c in &self.changes {
            text.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                c.id,
                c.before.as_deref().unwrap_or("not run"),
                c.after.as_deref().unwrap_or("not run"),
                if c.regression { "**regression**" } else { "" }
            ));
        }
        text
    }

    /// For machines.
    pub fn json(&self) -> Value {
        let side = |report: &Value| {
            json!({
                "tprox": report["tprox"],
                "proxy": report["proxy"],
                "seed": report["seed"],
                "stall_timeout_s": report["stall_timeout_s"],
                "started": report["started"],
            })
        };
        json!({
            "format": "tprox-diff",
            "version": 1,
            "old": side(&self.old),
            "new": side(&self.new),
            "regressions": self.regressions(),
            "changes": self.changes.iter().map(|c| json!({
                "id": c.id,
                "before": c.before,
                "after": c.after,
                "regression": c.regression,
            })).collect::<Vec<_>>(),
        })
    }
}

fn read_report(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the report {}: {e}", path.display()))?;
    let report: Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{} is not a JSON report ({e}): write one with tprox --output report.json",
            path.display()
        )
    })?;
    if report["format"] != "tprox-report" || report["version"] != crate::formats::JSON_VERSION {
        return Err(format!(
            "{} is not a tprox report of version {} (format {}, version {}): write one with \
             tprox --output report.json",
            path.display(),
            crate::formats::JSON_VERSION,
            report["format"],
            report["version"]
        ));
    }
    Ok(report)
}

/// Each case's id and verdict, in the report's order.
fn cases(report: &Value) -> Vec<(String, Seen)> {
    let empty = Vec::new();
    report["cases"]
        .as_array()
        .unwrap_or(&empty)
        .iter()
        .filter_map(|case| {
            let id = case["id"].as_str()?.to_string();
            let failing = case["counts_as_failure"].as_bool().unwrap_or(false);
            let known = case["expected"]["finding"] == "known-deviation";
            let verdict = match case["outcome"].as_str()? {
                "fail" if known => "known deviation",
                "fail" if failing => "fail",
                "fail" => "warn",
                "pass" if !case["flaky"].is_null() => "flaky",
                other => other,
            };
            Some((
                id,
                Seen {
                    verdict: verdict.to_string(),
                    failing,
                },
            ))
        })
        .collect()
}

fn describe(report: &Value) -> String {
    format!(
        "{} (tprox {}, seed {}, started {})",
        report["proxy"].as_str().unwrap_or("?"),
        report["tprox"].as_str().unwrap_or("?"),
        report["seed"],
        report["started"].as_str().unwrap_or("?")
    )
}

/// Text in a Markdown table or line: its own syntax made literal.
fn escape(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('`', "\\`")
        .replace('*', "\\*")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(cases: &[(&str, &str, bool)]) -> Value {
        json!({
            "format": "tprox-report", "version": 1, "tprox": "0.1.0", "proxy": "./p", "seed": 7,
            "started": "2026-12-06T10:00:00Z",
            "cases": cases.iter().map(|(id, outcome, failing)| json!({
                "id": id, "outcome": outcome, "counts_as_failure": failing, "flaky": null,
                "expected": null,
            })).collect::<Vec<_>>(),
        })
    }

    #[test]
    fn changed_verdicts_are_listed_and_only_new_failures_regress() {
        let old = report(&[
            ("echo/single", "pass", false),
            ("shutdown/one-way", "fail", true),
            ("latency/small-writes", "pass", false),
            ("timeout/idle", "pass", false),
        ]);
        let new = report(&[
            ("echo/single", "fail", true),
            ("shutdown/one-way", "pass", false),
            ("latency/small-writes", "fail", false),
            ("connect/refused", "pass", false),
        ]);
        let diff = Diff::of(old, new);
        let seen: Vec<(&str, Option<&str>, Option<&str>, bool)> = diff
            .changes
            .iter()
            .map(|c| {
                (
                    c.id.as_str(),
                    c.before.as_deref(),
                    c.after.as_deref(),
                    c.regression,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("echo/single", Some("pass"), Some("fail"), true),
                ("shutdown/one-way", Some("fail"), Some("pass"), false),
                ("latency/small-writes", Some("pass"), Some("warn"), false),
                ("connect/refused", None, Some("pass"), false),
                ("timeout/idle", Some("pass"), None, false),
            ]
        );
        assert!(!diff.is_success());
        let markdown = diff.markdown();
        assert!(markdown.starts_with("### tprox: 5 case(s) changed, 1 regression(s)"));
        assert!(markdown.contains("| `echo/single` | pass | fail | **regression** |"));
        assert_eq!(diff.json()["regressions"], 1);
        let same = Diff::of(
            report(&[("echo/single", "pass", false)]),
            report(&[("echo/single", "pass", false)]),
        );
        assert!(same.is_success() && same.changes.is_empty());
        assert!(same.markdown().contains("No case changed its verdict."));
    }
}
