//! `tprox diff OLD.json NEW.json`: what changed between two runs' JSON reports, for a pull
//! request's check against the main branch's last run: the cases whose verdict changed, and
//! which of those are regressions (a case that did not count as a failure and now does); the
//! figures the cases measured that moved beyond their spread; and the settings the two runs
//! differ in, since a verdict that changed with them may not be the proxy's doing.
//!
//! Only verdicts decide the exit status. A figure that moved is reported, better or worse,
//! but fails nothing: on a shared CI machine latency and CPU move with the load, and the
//! bounds that matter are already the verdicts' (a proxy over them fails its case).
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

/// A figure of one case that moved beyond the two runs' spreads.
#[derive(Debug, Clone, PartialEq)]
pub struct Moved {
    /// The case id.
    pub id: String,
    /// The figure's name, as the case records it.
    pub name: String,
    pub unit: String,
    pub before: f64,
    pub after: f64,
    /// The two runs' spreads together: the move exceeded it.
    pub spread: f64,
}

impl Moved {
    /// Whether it moved the wrong way (every figure is better lower).
    pub fn is_worse(&self) -> bool {
        self.after > self.before
    }

    fn describe(&self) -> String {
        format!(
            "{} {}: {} → {} {} (spread {})",
            self.id,
            self.name,
            number(self.before),
            number(self.after),
            self.unit,
            number(self.spread)
        )
    }
}

/// A setting the two runs differ in.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub name: String,
    pub before: Value,
    pub after: Value,
}

/// The two reports compared.
#[derive(Debug, Clone)]
pub struct Diff {
    /// The reports' own words on their runs: tprox version, proxy, seed, stall timeout.
    old: Value,
    new: Value,
    /// The cases that changed, in the new report's order, then those only in the old one.
    pub changes: Vec<Change>,
    /// The figures that moved beyond their spread, in the new report's order.
    pub moved: Vec<Moved>,
    /// The settings the runs differ in (the seed included: payloads differ with it).
    pub settings: Vec<Setting>,
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
        let moved = moved(&old, &new);
        let settings = settings(&old, &new);
        Diff {
            old,
            new,
            changes,
            moved,
            settings,
        }
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
        if !self.settings.is_empty() {
            text.push_str(&format!("  the runs differ in: {}\n", self.settings_line()));
        }
        for c in &self.changes {
            text.push_str(&format!(
                "  {:<10} {:<28} {} → {}\n",
                if c.regression { "REGRESSED" } else { "changed" },
                c.id,
                c.before.as_deref().unwrap_or("(not run)"),
                c.after.as_deref().unwrap_or("(not run)")
            ));
        }
        for m in &self.moved {
            text.push_str(&format!(
                "  {:<10} {}\n",
                if m.is_worse() { "worse" } else { "better" },
                m.describe()
            ));
        }
        text
    }

    fn settings_line(&self) -> String {
        self.settings
            .iter()
            .map(|s| format!("{} {} → {}", s.name, s.before, s.after))
            .collect::<Vec<_>>()
            .join(", ")
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
        if !self.settings.is_empty() {
            text.push_str(&format!(
                "The runs differ in: {}\n\n",
                escape(&self.settings_line())
            ));
        }
        if self.changes.is_empty() {
            text.push_str("No case changed its verdict.\n");
        } else {
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
        }
        if !self.moved.is_empty() {
            text.push_str(
                "\nFigures that moved beyond their spread (they fail nothing; lower is \
                 better):\n\n| case | figure | before | after | spread | |\n\
                 |---|---|---|---|---|---|\n",
            );
            for m in &self.moved {
                text.push_str(&format!(
                    "| `{}` | {} | {} {} | {} {} | {} | {} |\n",
                    m.id,
                    escape(&m.name),
                    number(m.before),
                    escape(&m.unit),
                    number(m.after),
                    escape(&m.unit),
                    number(m.spread),
                    if m.is_worse() { "worse" } else { "better" }
                ));
            }
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
            "settings": self.settings.iter().map(|s| json!({
                "name": s.name, "before": s.before, "after": s.after,
            })).collect::<Vec<_>>(),
            "moved": self.moved.iter().map(|m| json!({
                "id": m.id, "name": m.name, "unit": m.unit, "before": m.before,
                "after": m.after, "spread": m.spread, "worse": m.is_worse(),
            })).collect::<Vec<_>>(),
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

/// The figures of the cases both runs have that moved beyond the two spreads together.
fn moved(old: &Value, new: &Value) -> Vec<Moved> {
    let figures = |report: &Value| -> Vec<(String, String, String, f64, f64)> {
        let empty = Vec::new();
        let cases = report["cases"].as_array().unwrap_or(&empty);
        cases
            .iter()
            .flat_map(|case| {
                let id = case["id"].as_str().unwrap_or_default().to_string();
                let figures = case["figures"].as_array().cloned().unwrap_or_default();
                figures.into_iter().filter_map(move |f| {
                    Some((
                        id.clone(),
                        f["name"].as_str()?.to_string(),
                        f["unit"].as_str()?.to_string(),
                        f["value"].as_f64()?,
                        f["spread"].as_f64()?,
                    ))
                })
            })
            .collect()
    };
    let before = figures(old);
    figures(new)
        .into_iter()
        .filter_map(|(id, name, unit, after, after_spread)| {
            let (.., was, was_spread) = before
                .iter()
                .find(|(i, n, u, ..)| *i == id && *n == name && *u == unit)?;
            let spread = was_spread + after_spread;
            ((after - was).abs() > spread).then_some(Moved {
                id,
                name,
                unit,
                before: *was,
                after,
                spread,
            })
        })
        .collect()
}

/// The settings the two runs differ in: the top-level ones and each of `settings`.
fn settings(old: &Value, new: &Value) -> Vec<Setting> {
    let mut names: Vec<(String, Value, Value)> =
        ["tprox", "proxy", "seed", "stall_timeout_s", "strict"]
            .iter()
            .map(|name| (name.to_string(), old[name].clone(), new[name].clone()))
            .collect();
    let empty = serde_json::Map::new();
    let (was, is) = (
        old["settings"].as_object().unwrap_or(&empty),
        new["settings"].as_object().unwrap_or(&empty),
    );
    for name in was
        .keys()
        .chain(is.keys().filter(|k| !was.contains_key(*k)))
    {
        let get =
            |side: &serde_json::Map<String, Value>| side.get(name).cloned().unwrap_or(Value::Null);
        names.push((name.clone(), get(was), get(is)));
    }
    names
        .into_iter()
        .filter(|(_, before, after)| before != after)
        .map(|(name, before, after)| Setting {
            name,
            before,
            after,
        })
        .collect()
}

/// A figure as people read it: three significant digits at most, no trailing zeros.
fn number(value: f64) -> String {
    let text = if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    };
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
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

    /// A figure moves only beyond the two spreads together; settings that differ are named.
    #[test]
    fn figures_that_moved_beyond_their_spread_and_settings_that_differ_are_told() {
        let with = |median: f64, spread: f64, jobs: u32| {
            let mut report = report(&[("latency/small-writes", "pass", false)]);
            report["cases"][0]["figures"] = json!([
                { "name": "median round trip", "unit": "ms", "value": median, "spread": spread },
            ]);
            report["settings"] = json!({ "jobs": jobs });
            report
        };
        let within = Diff::of(with(0.2, 0.1, 4), with(0.35, 0.1, 4));
        assert!(within.moved.is_empty() && within.settings.is_empty());
        let worse = Diff::of(with(0.2, 0.1, 4), with(44.0, 0.5, 2));
        assert_eq!(worse.moved.len(), 1);
        assert!(worse.moved[0].is_worse());
        // Figures fail nothing: only verdicts decide the exit status.
        assert!(worse.is_success());
        assert!(
            worse.human().contains(
                "worse      latency/small-writes median round trip: 0.2 → 44 ms (spread 0.6)"
            ),
            "{}",
            worse.human()
        );
        assert!(worse.human().contains("the runs differ in: jobs 4 → 2"));
        assert!(
            worse.markdown().contains(
                "| `latency/small-writes` | median round trip | 0.2 ms | 44 ms | 0.6 | worse |"
            ),
            "{}",
            worse.markdown()
        );
        assert_eq!(worse.json()["moved"][0]["worse"], true);
        assert_eq!(worse.json()["settings"][0]["name"], "jobs");
    }
}
