//! What a grading writes, each format in a file of its own: the gradebook as JSON (the form
//! that merges), CSV and an HTML page; and the exports to where courses keep grades:
//! Gradescope's autograder results, a CSV that an LMS gradebook imports, and one feedback page
//! per submission to hand back.
//!
//! Every format is made from the gradebook alone, so that `grade merge` writes them for the
//! whole class exactly as a single run would. Writing walks [`FORMATS`]: a new format is a
//! new file and one line there.

mod csv;
mod feedback;
mod gradescope;
pub mod html;
mod json;
mod lms;
mod text;

use std::path::{Path, PathBuf};

use super::gradebook::Gradebook;

/// One file a format makes, at `path` under the output directory.
pub struct Output {
    pub path: PathBuf,
    pub text: String,
}

/// A format: what it is called, where it is shown to the teacher (a class-wide file, or the
/// directory of its per-submission files), and the files it makes.
struct Format {
    shown: &'static str,
    /// Per-submission formats are shown only when there are submissions.
    per_submission: bool,
    files: fn(&Gradebook) -> Vec<Output>,
}

/// Every format a grading writes, in the order they are listed to the teacher.
const FORMATS: [Format; 6] = [
    Format {
        shown: "gradebook.json",
        per_submission: false,
        files: json::files,
    },
    Format {
        shown: "gradebook.csv",
        per_submission: false,
        files: csv::files,
    },
    Format {
        shown: "gradebook.html",
        per_submission: false,
        files: html::files,
    },
    Format {
        shown: "lms.csv",
        per_submission: false,
        files: lms::files,
    },
    Format {
        shown: "gradescope",
        per_submission: true,
        files: gradescope::files,
    },
    Format {
        shown: "feedback",
        per_submission: true,
        files: feedback::files,
    },
];

/// A CSV cell that a spreadsheet shows as text, never evaluates: a cell that starts with `=`,
/// `+`, `-` or `@` is a formula to Excel, LibreOffice and Google Sheets (and a tab or carriage
/// return lets one through), and a submission's name or a proxy's message is the student's to
/// choose. Such a cell is prefixed with `'`, as OWASP's advice on CSV injection says.
pub(super) fn cell(text: &str) -> String {
    match text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        true => format!("'{text}"),
        false => text.to_string(),
    }
}

/// Writes every format into `out`. Returns the paths of the class-wide files and of the
/// per-submission directories.
pub fn write(book: &Gradebook, out: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut shown = Vec::new();
    for format in &FORMATS {
        for file in (format.files)(book) {
            let path = out.join(&file.path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            std::fs::write(&path, file.text)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        if !format.per_submission || !book.submissions.is_empty() {
            shown.push(out.join(format.shown));
        }
    }
    Ok(shown)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::grade::gradebook::{tests, CaseResult, GradedCase};
    use crate::verdict::Verdict;

    #[test]
    fn cells_a_spreadsheet_would_evaluate_are_made_text() {
        for formula in [
            "=HYPERLINK(\"http://localhost/\",\"x\")",
            "+1",
            "-1+2",
            "@SUM(A1)",
            "\t=1",
            "\r=1",
        ] {
            assert_eq!(cell(formula), format!("'{formula}"));
        }
        assert_eq!(cell("alice"), "alice");
        assert_eq!(cell("a=b"), "a=b");
    }

    /// A gradebook whose submissions fail `echo/single` and pass `echo/chain-2`.
    pub(crate) fn book(partition: &str, names: &[&str]) -> Gradebook {
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
                accepted: None,
            });
            s.total += 3.0;
        }
        book
    }
}
