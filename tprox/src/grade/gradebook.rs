//! The gradebook: one row per submission, points per case, the total, and every failure with
//! its message. Written as JSON (the form that merges and that the HTML report is made from)
//! and as CSV (for spreadsheets and the course's own tools).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::verdict::Verdict;

/// The gradebook format's name and version, checked when gradebooks are merged.
pub const FORMAT: &str = "tprox-gradebook";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Gradebook {
    pub format: String,
    pub version: u32,
    /// The tprox version that graded.
    pub tprox: String,
    pub grading_file: String,
    /// Digest of the grading file's text; gradebooks from different files do not merge.
    pub grading_digest: String,
    pub seed: u64,
    pub stall_timeout_s: f64,
    pub started: String,
    /// The shares of the class this gradebook holds, as "K/N"; all of them after a merge.
    pub partitions: Vec<String>,
    /// The graded cases, in catalogue order, with their points.
    pub cases: Vec<GradedCase>,
    pub max_total: f64,
    /// How many times each submission was graded (`--repeat`; seeds seed, seed + 1, …).
    #[serde(default = "one")]
    pub repeat: u32,
    pub submissions: Vec<Submission>,
    /// The proxy's start command as the grading file gives it: the rerun commands of the
    /// feedback pages are made from it.
    #[serde(default)]
    pub start: Vec<String>,
    /// The grading file's `[export]` settings.
    #[serde(default)]
    pub export: Export,
    /// The sandbox the submissions were graded in ("namespaces (bubblewrap …)"), or "none"
    /// with the warning that grading printed.
    #[serde(default)]
    pub sandbox: String,
}

/// The grading file's `[export]` settings, kept in the gradebook so that a merge exports as
/// the grading did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    /// The LMS CSV's column of student ids (submission names).
    pub lms_id_column: String,
    /// The LMS CSV's column of totals.
    pub lms_score_column: String,
    /// When Gradescope shows the tests to the student.
    pub gradescope_visibility: Visibility,
}

impl Default for Export {
    fn default() -> Self {
        Export {
            lms_id_column: "SIS Login ID".into(),
            lms_score_column: "tprox".into(),
            gradescope_visibility: Visibility::Visible,
        }
    }
}

/// Gradescope's visibility settings for a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    Visible,
    Hidden,
    AfterDueDate,
    AfterPublished,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradedCase {
    pub id: String,
    pub name: String,
    pub points: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    pub name: String,
    /// The submission's directory, as given.
    pub path: String,
    pub status: Status,
    /// Why the submission was not graded case by case (build failure, proxy never started).
    pub error: Option<String>,
    pub total: f64,
    pub duration_s: f64,
    pub build: Option<BuildResult>,
    /// One per graded case, in the gradebook's case order.
    pub results: Vec<CaseResult>,
    /// With `--repeat`: each run's total, in run order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_totals: Vec<f64>,
    /// The grading file's limits it ran into (its writable space, processes, memory, the
    /// build's time), in words for the teacher.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<String>,
}

impl Submission {
    /// Whether every run gave every case the same verdict (always, when graded once).
    pub fn stable(&self) -> bool {
        self.results.iter().all(|r| r.unstable.is_none())
            && self.run_totals.windows(2).all(|w| w[0] == w[1])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Built (if there is a build step), started, and every case run or timed out.
    Graded,
    BuildFailed,
    /// The proxy exited or never listened when started.
    DidNotStart,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Graded => "graded",
            Status::BuildFailed => "build failed",
            Status::DidNotStart => "did not start",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildResult {
    pub ok: bool,
    pub duration_s: f64,
    /// The build's output, relative to the gradebook's directory.
    pub log: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    pub case: String,
    /// The case's verdict (pass, fail, skip or flaky: grading is strict, a failed SHOULD
    /// case fails); `None`, written `"not-run"`, when the submission never got to run cases.
    #[serde(with = "not_run")]
    pub outcome: Option<Verdict>,
    pub points: f64,
    /// What was expected and observed, for everything but a plain pass.
    pub message: Option<String>,
    /// With `--repeat`, when the runs disagreed on this case: how often it passed
    /// ("passed 2 of 3 runs"). The outcome and points are then the majority's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unstable: Option<String>,
    /// Set when the grading file accepts this case's failure (`[expect]`): the reason. The
    /// case then earns its points whatever its outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted: Option<String>,
}

impl CaseResult {
    /// Whether the case earned its points: a pass, a flaky pass, a skip (which means tprox
    /// could not check the case on this machine, the same for every submission), or any
    /// outcome of a case the course accepts failing.
    pub fn earns(&self) -> bool {
        self.outcome
            .is_some_and(|v| v.is_success() || self.accepted.is_some())
    }

    /// The outcome's name, as the JSON writes it.
    pub fn label(&self) -> &'static str {
        self.outcome.map_or(not_run::LABEL, Verdict::label)
    }
}

/// A case result's outcome in JSON: a verdict's name, or `"not-run"`.
mod not_run {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::verdict::Verdict;

    pub const LABEL: &str = "not-run";

    pub fn serialize<S: Serializer>(outcome: &Option<Verdict>, out: S) -> Result<S::Ok, S::Error> {
        match outcome {
            Some(verdict) => verdict.serialize(out),
            None => out.serialize_str(LABEL),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Option<Verdict>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Text {
            Verdict(Verdict),
            Other(String),
        }
        match Text::deserialize(input)? {
            Text::Verdict(verdict) => Ok(Some(verdict)),
            Text::Other(text) if text == LABEL => Ok(None),
            Text::Other(text) => Err(serde::de::Error::custom(format!(
                "unknown outcome '{text}' (pass, fail, skip, flaky, warn or not-run)"
            ))),
        }
    }
}

impl Gradebook {
    pub fn read_json(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let book: Gradebook = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is not a tprox gradebook (gradebook.json): {e}",
                path.display()
            )
        })?;
        if book.format != FORMAT || book.version != VERSION {
            return Err(format!(
                "{} is a {} version {} file; this tprox reads {FORMAT} version {VERSION}",
                path.display(),
                book.format,
                book.version
            ));
        }
        Ok(book)
    }

    /// Joins partial gradebooks (from `--partition`) into one. They must come from the same
    /// grading file and hold different submissions.
    pub fn merge(books: Vec<Gradebook>) -> Result<Gradebook, String> {
        let mut books = books.into_iter();
        let mut merged = books.next().ok_or("nothing to merge")?;
        for book in books {
            if book.repeat != merged.repeat {
                return Err(format!(
                    "the gradebooks were graded a different number of times (--repeat {} and \
                     {}): grade every partition with the same --repeat",
                    merged.repeat, book.repeat
                ));
            }
            if book.grading_digest != merged.grading_digest || book.cases != merged.cases {
                return Err(format!(
                    "the gradebooks were graded with different grading files ({} and {}): \
                     grade every partition with the same file",
                    merged.grading_file, book.grading_file
                ));
            }
            for partition in book.partitions {
                if merged.partitions.contains(&partition) {
                    return Err(format!("partition {partition} appears twice"));
                }
                merged.partitions.push(partition);
            }
            for submission in book.submissions {
                if merged.submissions.iter().any(|s| s.name == submission.name) {
                    return Err(format!(
                        "submission '{}' appears in two gradebooks",
                        submission.name
                    ));
                }
                merged.submissions.push(submission);
            }
            merged.started = merged.started.min(book.started);
            // A share graded without the sandbox taints the whole: its warning is kept.
            if book.sandbox != merged.sandbox && !book.sandbox.starts_with("namespaces") {
                merged.sandbox = book.sandbox;
            }
        }
        merged.partitions.sort();
        merged.submissions.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(merged)
    }

    /// The shares a merged gradebook lacks, such as "2/3", if its partitions say "K/N".
    pub fn missing_partitions(&self) -> Vec<String> {
        let count = self
            .partitions
            .iter()
            .filter_map(|p| p.split_once('/')?.1.parse::<usize>().ok())
            .max();
        match count {
            Some(n) => (1..=n)
                .map(|k| format!("{k}/{n}"))
                .filter(|p| !self.partitions.contains(p))
                .collect(),
            None => Vec::new(),
        }
    }
}

/// Points as people write them: 2, 0.5.
pub fn number(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn book(partition: &str, names: &[&str]) -> Gradebook {
        Gradebook {
            format: FORMAT.into(),
            version: VERSION,
            tprox: "0".into(),
            grading_file: "grading.toml".into(),
            grading_digest: "d".into(),
            seed: 1,
            stall_timeout_s: 2.0,
            started: "2026-01-01T00:00:00Z".into(),
            partitions: vec![partition.into()],
            cases: vec![GradedCase {
                id: "echo/single".into(),
                name: "echo".into(),
                points: 2.0,
            }],
            max_total: 2.0,
            repeat: 1,
            submissions: names
                .iter()
                .map(|name| Submission {
                    name: name.to_string(),
                    path: format!("subs/{name}"),
                    status: Status::Graded,
                    error: None,
                    total: 0.0,
                    duration_s: 1.0,
                    build: None,
                    results: vec![CaseResult {
                        case: "echo/single".into(),
                        outcome: Some(Verdict::Fail),
                        points: 0.0,
                        message: Some("expected: an echo\nobserved: \"nothing\", at all".into()),
                        unstable: None,
                        accepted: None,
                    }],
                    run_totals: Vec::new(),
                    limits: Vec::new(),
                })
                .collect(),
            start: vec!["./tcpproxy".into()],
            export: Export::default(),
            sandbox: "namespaces (bubblewrap 0.8.0)".into(),
        }
    }

    #[test]
    fn partial_gradebooks_merge_sorted_and_report_missing_shares() {
        let merged =
            Gradebook::merge(vec![book("3/3", &["zed", "bob"]), book("1/3", &["amy"])]).unwrap();
        let names: Vec<_> = merged.submissions.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["amy", "bob", "zed"]);
        assert_eq!(merged.partitions, ["1/3", "3/3"]);
        assert_eq!(merged.missing_partitions(), ["2/3"]);
    }

    #[test]
    fn merging_refuses_duplicates_and_other_grading_files() {
        let err = Gradebook::merge(vec![book("1/2", &["amy"]), book("2/2", &["amy"])]).unwrap_err();
        assert!(err.contains("'amy' appears in two"), "{err}");
        let mut other = book("2/2", &["bob"]);
        other.grading_digest = "e".into();
        let err = Gradebook::merge(vec![book("1/2", &["amy"]), other]).unwrap_err();
        assert!(err.contains("different grading files"), "{err}");
        let err = Gradebook::merge(vec![book("1/2", &["amy"]), book("1/2", &["bob"])]).unwrap_err();
        assert!(err.contains("partition 1/2 appears twice"), "{err}");
        let mut repeated = book("2/2", &["bob"]);
        repeated.repeat = 3;
        let err = Gradebook::merge(vec![book("1/2", &["amy"]), repeated]).unwrap_err();
        assert!(err.contains("--repeat 1 and 3"), "{err}");
    }

    #[test]
    fn points_print_without_trailing_zeros() {
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(1.25), "1.25");
    }
}
