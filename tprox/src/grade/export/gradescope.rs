//! Gradescope runs one submission per container and reads
//! `/autograder/results/results.json`: the overall `score`, `execution_time` in seconds, an
//! `output` for the whole submission, and `tests`, each with `name`, `number`, `score`,
//! `max_score`, `status` ("passed" or "failed"), `output` and `visibility` (published at
//! <https://gradescope-autograders.readthedocs.io/en/latest/specs/>). tprox writes one such
//! file per submission, `gradescope/NAME/results.json`; `ci/gradescope/run_autograder`
//! copies it where Gradescope looks.

use std::path::Path;

use serde_json::{json, Value};

use super::text::{passed, summary, test_output};
use super::Output;
use crate::grade::gradebook::{Export, Gradebook, Submission};

pub(super) fn files(book: &Gradebook) -> Vec<Output> {
    book.submissions
        .iter()
        .map(|submission| Output {
            path: Path::new("gradescope")
                .join(&submission.name)
                .join("results.json"),
            text: serde_json::to_string_pretty(&gradescope(book, submission, &book.export))
                .expect("JSON values serialize")
                + "\n",
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::super::tests::book;
    use super::*;
    use crate::grade::gradebook::Visibility;

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
}
