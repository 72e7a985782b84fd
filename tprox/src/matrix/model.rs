//! The matrix as data: what `matrix.json` holds, what the Markdown and HTML pages are rendered
//! from, and what a later run is checked against.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::outcome::Outcome;
use crate::report::CaseReport;
use crate::verdict::Verdict;

/// The `format` field of `matrix.json`, so that a file from elsewhere is recognised as such.
pub const FORMAT: &str = "tprox-compatibility-matrix";
/// Bumped when a field changes meaning.
pub const VERSION: u32 = 1;

/// Proxies × cases, with everything needed to explain each cell.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Matrix {
    pub format: String,
    pub version: u32,
    pub tprox: String,
    /// When the measurement started (RFC 3339, seconds).
    pub started: String,
    pub stall_timeout_s: f64,
    pub seed: u64,
    pub cases: Vec<CaseRow>,
    pub proxies: Vec<ProxyColumn>,
}

/// One case of the catalogue, as the matrix shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CaseRow {
    pub id: String,
    pub name: String,
    /// MUST or SHOULD.
    pub level: String,
    pub rules: String,
}

/// One proxy: its profile, its version in its own words, and a cell per case.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProxyColumn {
    pub profile: String,
    pub about: String,
    /// What the proxy printed when asked for its version.
    pub version: String,
    /// Set when the proxy could not be started at all; the cells are then empty.
    pub setup_error: Option<String>,
    /// Keyed by case id.
    pub cells: BTreeMap<String, Cell>,
}

/// One proxy's verdict on one case, and for anything but a pass, why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cell {
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The profile's notes that tie this verdict to the proxy's documented behaviour.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The last lines the proxy printed in this case (failures only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
}

/// How the matrix shows a [`Verdict`], and whether a cell needs a note.
pub trait Shown {
    /// What the Markdown table shows.
    fn mark(self) -> &'static str;
    /// What the HTML page shows: characters every font has (a browser without an emoji font
    /// draws the Markdown's marks as empty boxes).
    fn symbol(self) -> &'static str;
    /// Whether the cell needs an explanation.
    fn needs_note(self) -> bool;
}

impl Shown for Verdict {
    fn mark(self) -> &'static str {
        match self {
            Verdict::Pass => "✅",
            Verdict::Warn => "⚠️",
            Verdict::Fail => "❌",
            Verdict::Flaky => "🔁",
            Verdict::Skip => "➖",
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Verdict::Pass => "✓",
            Verdict::Warn => "⚠",
            Verdict::Fail => "✗",
            Verdict::Flaky => "↻",
            Verdict::Skip => "–",
        }
    }

    fn needs_note(self) -> bool {
        !matches!(self, Verdict::Pass | Verdict::Skip)
    }
}

impl Cell {
    /// The cell for one case's report; `notes` are the profile's notes that explain the case.
    pub fn of(report: &CaseReport, notes: Vec<String>) -> Self {
        // The matrix records SHOULD failures as warnings: it is never strict.
        let verdict = Verdict::of(report, false);
        let failure = match &report.outcome {
            Outcome::Fail(failure) => Some(failure),
            _ => report.flaky.as_ref(),
        };
        let mut cell = Cell {
            verdict,
            expected: failure.map(|f| f.expected.clone()),
            observed: failure.map(|f| f.observed.clone()),
            hint: failure.and_then(|f| f.hint.clone()),
            notes: Vec::new(),
            output: String::new(),
        };
        if let Outcome::Skip(reason) = &report.outcome {
            cell.observed = Some(reason.clone());
        }
        if verdict.needs_note() {
            cell.notes = notes;
            cell.output = report.proxy_output.clone();
        }
        cell
    }
}

/// A cell that differs between two matrices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub profile: String,
    pub case: String,
    /// The verdict in the matrix checked against, or why there is none.
    pub before: String,
    pub now: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<12} {:<24} was {}, now {}",
            self.profile, self.case, self.before, self.now
        )
    }
}

impl Matrix {
    /// The column of profile `name`.
    pub fn proxy(&self, name: &str) -> Option<&ProxyColumn> {
        self.proxies.iter().find(|p| p.profile == name)
    }

    /// Every cell whose verdict differs from `earlier`'s, over the proxies measured in both
    /// (a proxy measured in only one of them is not compared: `--profiles` may pick a few).
    /// A case present in one matrix only is a difference: the catalogue changed, and the
    /// committed matrix must be measured again.
    pub fn differences(&self, earlier: &Matrix) -> Vec<Difference> {
        let mut out = Vec::new();
        for now in &self.proxies {
            let Some(before) = earlier.proxy(&now.profile) else {
                continue;
            };
            let state = |column: &ProxyColumn, case: &str| match (
                &column.setup_error,
                column.cells.get(case),
            ) {
                (Some(_), _) => "did not start".to_string(),
                (None, Some(cell)) => cell.verdict.label().to_string(),
                (None, None) => "not measured".to_string(),
            };
            let ids: std::collections::BTreeSet<&String> = self
                .cases
                .iter()
                .chain(&earlier.cases)
                .map(|c| &c.id)
                .collect();
            for id in ids {
                let (was, is) = (state(before, id), state(now, id));
                if was != is {
                    out.push(Difference {
                        profile: now.profile.clone(),
                        case: id.clone(),
                        before: was,
                        now: is,
                    });
                }
            }
        }
        out
    }

    /// The (profile, case) pairs of failed or warned cells that no note explains.
    pub fn unexplained(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for proxy in &self.proxies {
            for case in &self.cases {
                if let Some(cell) = proxy.cells.get(&case.id) {
                    if cell.verdict.needs_note() && cell.notes.is_empty() {
                        out.push((proxy.profile.clone(), case.id.clone()));
                    }
                }
            }
        }
        out
    }

    /// How many cells of `proxy` have each verdict, in [`Verdict`] order.
    pub fn counts(proxy: &ProxyColumn) -> BTreeMap<Verdict, usize> {
        let mut counts = BTreeMap::new();
        for cell in proxy.cells.values() {
            *counts.entry(cell.verdict).or_insert(0) += 1;
        }
        counts
    }

    pub fn read_json(path: &Path) -> Result<Matrix, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the matrix {}: {e}", path.display()))?;
        let matrix: Matrix = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a matrix written by tprox matrix (matrix.json): {e}",
                path.display()
            )
        })?;
        if matrix.format != FORMAT || matrix.version != VERSION {
            return Err(format!(
                "{} is a {} version {} file; this tprox reads {FORMAT} version {VERSION}",
                path.display(),
                matrix.format,
                matrix.version
            ));
        }
        Ok(matrix)
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a matrix is plain data");
        text.push('\n');
        text
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn cell(verdict: Verdict, note: Option<&str>) -> Cell {
        Cell {
            verdict,
            expected: verdict.needs_note().then(|| "the byte \"!\"".into()),
            observed: verdict.needs_note().then(|| "EOF <early>".into()),
            hint: None,
            notes: note.map(String::from).into_iter().collect(),
            output: String::new(),
        }
    }

    pub(crate) fn sample() -> Matrix {
        let case = |id: &str, level: &str| CaseRow {
            id: id.into(),
            name: format!("Case {id}"),
            level: level.into(),
            rules: "R5".into(),
        };
        let column = |name: &str, cells: Vec<(&str, Cell)>| ProxyColumn {
            profile: name.into(),
            about: format!("{name} & co"),
            version: format!("{name} version 1.0"),
            setup_error: None,
            cells: cells
                .into_iter()
                .map(|(id, c)| (id.to_string(), c))
                .collect(),
        };
        Matrix {
            format: FORMAT.into(),
            version: VERSION,
            tprox: "0.1.0".into(),
            started: "2026-11-23T15:00:00Z".into(),
            stall_timeout_s: 2.0,
            seed: 7,
            cases: vec![
                case("echo/single", "MUST"),
                case("latency/small-writes", "SHOULD"),
            ],
            proxies: vec![
                column(
                    "ref",
                    vec![
                        ("echo/single", cell(Verdict::Pass, None)),
                        ("latency/small-writes", cell(Verdict::Pass, None)),
                    ],
                ),
                column(
                    "slow",
                    vec![
                        ("echo/single", cell(Verdict::Fail, None)),
                        (
                            "latency/small-writes",
                            cell(Verdict::Warn, Some("no TCP_NODELAY")),
                        ),
                    ],
                ),
            ],
        }
    }

    #[test]
    fn json_round_trips() {
        let matrix = sample();
        let back: Matrix = serde_json::from_str(&matrix.to_json()).unwrap();
        assert_eq!(back, matrix);
    }

    #[test]
    fn differences_name_each_flipped_cell_and_each_new_case() {
        let before = sample();
        let mut now = sample();
        assert!(now.differences(&before).is_empty());
        now.proxies[1].cells.get_mut("echo/single").unwrap().verdict = Verdict::Pass;
        now.cases.push(CaseRow {
            id: "new/case".into(),
            name: "New".into(),
            level: "MUST".into(),
            rules: "R1".into(),
        });
        now.proxies[0]
            .cells
            .insert("new/case".into(), cell(Verdict::Pass, None));
        let found: Vec<String> = now
            .differences(&before)
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("ref")
                && found[0].contains("new/case")
                && found[0].contains("was not measured, now pass")
        );
        assert!(found.iter().any(|d| d.starts_with("slow")
            && d.contains("echo/single")
            && d.contains("was fail, now pass")));
        // A proxy measured only now is not a difference.
        now.proxies.push(ProxyColumn {
            profile: "extra".into(),
            ..now.proxies[0].clone()
        });
        assert_eq!(now.differences(&before).len(), 2);
    }

    #[test]
    fn a_failure_without_a_note_is_unexplained() {
        assert_eq!(
            sample().unexplained(),
            [("slow".to_string(), "echo/single".to_string())]
        );
    }
}
