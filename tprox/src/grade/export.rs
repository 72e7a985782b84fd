//! Grades where courses keep them: Gradescope's autograder results, a CSV that an LMS
//! gradebook (Canvas, Moodle) imports, and one feedback page per submission to hand back.
//!
//! All three are made from the gradebook alone, so that `grade merge` writes them for the
//! whole class exactly as a single run would.
//!
//! * Gradescope runs one submission per container and reads
//!   `/autograder/results/results.json`: the overall `score`, `execution_time` in seconds, an
//!   `output` for the whole submission, and `tests`, each with `name`, `number`, `score`,
//!   `max_score`, `status` ("passed" or "failed"), `output` and `visibility` (published at
//!   <https://gradescope-autograders.readthedocs.io/en/latest/specs/>). tprox writes one such
//!   file per submission, `gradescope/NAME/results.json`; `ci/gradescope/run_autograder`
//!   copies it where Gradescope looks.
//! * Canvas and Moodle import a CSV of one row per student: a column that names the student
//!   and a column of points. Canvas matches rows by a column named `SIS Login ID`, `SIS User
//!   ID` or `ID` and takes other columns as assignments; Moodle asks, when importing, which
//!   column identifies the user and which holds the grade. Both names are set in the grading
//!   file's `[export]` section; the submission directory's name is the student's id.

use std::fmt::Write;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::gradebook::{number, CaseResult, Gradebook, Status, Submission};

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

/// Gradescope's `results.json` for one submission.
pub fn gradescope(book: &Gradebook, submission: &Submission, export: &Export) -> Value {
    let tests: Vec<Value> = book
        .cases
        .iter()
        .zip(&submission.results)
        .enumerate()
        .map(|(i, (case, result))| {
            json!({
                "name": format!("{} ({})", case.name, case.id),
                "number": (i + 1).to_string(),
                "score": result.points,
                "max_score": case.points,
                "status": if passed(result) { "passed" } else { "failed" },
                "output": test_output(book, &case.id, result),
                "visibility": export.gradescope_visibility,
            })
        })
        .collect();
    json!({
        "score": submission.total,
        "execution_time": submission.duration_s.round() as u64,
        "output": summary(book, submission),
        "visibility": export.gradescope_visibility,
        "stdout_visibility": "hidden",
        "tests": tests,
    })
}

/// The CSV that an LMS gradebook imports: one row per submission, its name and its total.
pub fn lms_csv(book: &Gradebook, export: &Export) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([&export.lms_id_column, &export.lms_score_column])
        .expect("writing to memory");
    for s in &book.submissions {
        out.write_record([s.name.clone(), number(s.total)])
            .expect("writing to memory");
    }
    String::from_utf8(out.into_inner().expect("writing to memory")).expect("CSV of UTF-8")
}

/// The page a teacher hands back: the total, then every case that cost points, with its
/// requirement, what was expected and observed, the usual cause and the command that reruns
/// it on the student's own machine. Markdown, readable as text and rendered by any forge.
pub fn feedback(book: &Gradebook, submission: &Submission) -> String {
    let mut page = format!(
        "# {}: {} of {} points\n\n{}\n",
        submission.name,
        number(submission.total),
        number(book.max_total),
        summary(book, submission)
    );
    let lost: Vec<_> = book
        .cases
        .iter()
        .zip(&submission.results)
        .filter(|(_, r)| !passed(r) || r.unstable.is_some())
        .collect();
    if lost.is_empty() {
        page.push_str("\nEvery case passed.\n");
    }
    for (case, result) in lost {
        let _ = write!(
            page,
            "\n## {} ({}): {} of {} points\n\n",
            case.name,
            case.id,
            number(result.points),
            number(case.points)
        );
        if let Some(requirement) = requirement(&case.id) {
            let _ = writeln!(page, "**Requirement:** {requirement}\n");
        }
        let _ = writeln!(page, "```text\n{}\n```\n", test_message(result));
        if let Some(unstable) = &result.unstable {
            let _ = writeln!(page, "The verdict changed between runs: {unstable}.\n");
        }
        if result.outcome.is_some() {
            let _ = writeln!(
                page,
                "Rerun it in your own directory:\n\n```sh\n{}\n```",
                rerun(book, &case.id)
            );
        }
    }
    page
}

fn passed(result: &CaseResult) -> bool {
    result.earns()
}

/// One line on the whole submission: how it went, and why it was not graded if it was not.
fn summary(book: &Gradebook, submission: &Submission) -> String {
    let mut line = format!(
        "Graded by tprox {} at stall timeout {} s, seed {}: {}.",
        book.tprox,
        number(book.stall_timeout_s),
        book.seed,
        submission.status.label()
    );
    if let Some(error) = &submission.error {
        let _ = write!(line, " {error}");
    }
    if submission.status == Status::Graded && book.repeat > 1 {
        let _ = write!(
            line,
            " Graded {} times; the majority verdict counts.",
            book.repeat
        );
    }
    if !submission.limits.is_empty() {
        let _ = write!(line, " Limits reached: {}.", submission.limits.join("; "));
    }
    line
}

fn test_output(book: &Gradebook, case: &str, result: &CaseResult) -> String {
    if passed(result) && result.message.is_none() {
        return String::new();
    }
    let mut output = String::new();
    if let Some(requirement) = requirement(case) {
        let _ = writeln!(output, "requirement: {requirement}");
    }
    output.push_str(&test_message(result));
    if !passed(result) && result.outcome.is_some() {
        let _ = write!(output, "\nrerun: {}", rerun(book, case));
    }
    output
}

fn test_message(result: &CaseResult) -> String {
    match (&result.message, result.outcome) {
        (Some(message), _) => message.clone(),
        (None, None) => "not run: the proxy was not built or did not start".into(),
        (None, Some(verdict)) => verdict.label().into(),
    }
}

fn requirement(case: &str) -> Option<&'static str> {
    crate::CATALOGUE
        .iter()
        .find(|c| c.id == case)
        .map(|c| c.requirement)
}

/// The command that reruns one case against the proxy in the student's own directory.
fn rerun(book: &Gradebook, case: &str) -> String {
    let mut words = vec![
        "tprox".to_string(),
        "--only".into(),
        case.into(),
        "--seed".into(),
        book.seed.to_string(),
        "--stall-timeout".into(),
        number(book.stall_timeout_s),
        "--".into(),
    ];
    // The student's directory is what the grader's scratch copy was.
    words.extend(
        book.start
            .iter()
            .map(|w| w.replace("{submission}", ".").replace("{scratch}", ".")),
    );
    shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::gradebook::{tests, GradedCase};
    use crate::verdict::Verdict;

    /// A gradebook whose submissions fail `echo/single` and pass `echo/chain-2`.
    fn book(partition: &str, names: &[&str]) -> Gradebook {
        let mut book = tests::book(partition, names);
        book.cases.push(GradedCase {
            id: "echo/chain-2".into(),
            name: "Echo through two connections".into(),
            points: 3.0,
        });
        book.max_total += 3.0;
        for s in &mut book.submissions {
            s.results.push(CaseResult {
                case: "echo/chain-2".into(),
                outcome: Some(Verdict::Pass),
                points: 3.0,
                message: None,
                unstable: None,
            });
            s.total += 3.0;
        }
        book
    }

    /// The published results.json format, as a schema: what Gradescope reads.
    const GRADESCOPE_SCHEMA: &str = r#"{
        "type": "object",
        "required": ["tests"],
        "additionalProperties": false,
        "properties": {
            "score": {"type": "number"},
            "execution_time": {"type": "integer", "minimum": 0},
            "output": {"type": "string"},
            "visibility": {"enum": ["visible", "hidden", "after_due_date", "after_published"]},
            "stdout_visibility": {"enum": ["visible", "hidden", "after_due_date", "after_published"]},
            "extra_data": {"type": "object"},
            "tests": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["score", "max_score", "name"],
                    "additionalProperties": false,
                    "properties": {
                        "score": {"type": "number"},
                        "max_score": {"type": "number"},
                        "status": {"enum": ["passed", "failed"]},
                        "name": {"type": "string"},
                        "number": {"type": "string"},
                        "output": {"type": "string"},
                        "tags": {"type": "array", "items": {"type": "string"}},
                        "visibility": {"enum": ["visible", "hidden", "after_due_date", "after_published"]},
                        "extra_data": {"type": "object"}
                    }
                }
            }
        }
    }"#;

    #[test]
    fn results_json_follows_gradescopes_format_and_adds_up() {
        let book = book("1/1", &["alice"]);
        let submission = &book.submissions[0];
        let export = Export {
            gradescope_visibility: Visibility::AfterPublished,
            ..Export::default()
        };
        let results = gradescope(&book, submission, &export);
        let schema: Value = serde_json::from_str(GRADESCOPE_SCHEMA).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&results)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}\n{results:#}");
        let tests = results["tests"].as_array().unwrap();
        assert_eq!(tests.len(), book.cases.len());
        let sum: f64 = tests.iter().map(|t| t["score"].as_f64().unwrap()).sum();
        assert_eq!(sum, results["score"].as_f64().unwrap());
        assert_eq!(results["visibility"], "after_published");
        let failed = tests.iter().find(|t| t["status"] == "failed").unwrap();
        let output = failed["output"].as_str().unwrap();
        assert!(output.contains("expected:"), "{output}");
        assert!(output.contains("rerun: tprox --only"), "{output}");
    }

    #[test]
    fn the_lms_csv_has_the_configured_columns_and_one_row_per_submission() {
        let book = book("1/1", &["alice", "bob"]);
        let export = Export {
            lms_id_column: "Username".into(),
            lms_score_column: "Proxy lab".into(),
            ..Export::default()
        };
        let text = lms_csv(&book, &export);
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            ["Username", "Proxy lab"]
        );
        let rows: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect())
            .collect();
        let expected: Vec<Vec<String>> = book
            .submissions
            .iter()
            .map(|s| vec![s.name.clone(), number(s.total)])
            .collect();
        assert_eq!(rows, expected);
    }

    #[test]
    fn feedback_shows_each_lost_case_with_what_to_rerun() {
        let mut book = book("1/1", &["alice"]);
        book.start = vec![
            "{submission}/tcpproxy".into(),
            "{dest_host}".into(),
            "{dest_port}".into(),
            "{listen_port}".into(),
        ];
        let submission = &book.submissions[0];
        let page = feedback(&book, submission);
        assert!(page.starts_with(&format!("# alice: {} of", number(submission.total))));
        for (case, result) in book.cases.iter().zip(&submission.results) {
            assert_eq!(
                page.contains(&format!("({})", case.id)),
                !passed(result),
                "{page}"
            );
        }
        assert!(
            page.contains("tprox --only")
                && page.contains("-- ./tcpproxy '{dest_host}' '{dest_port}' '{listen_port}'"),
            "{page}"
        );
    }
}
