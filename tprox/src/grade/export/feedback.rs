//! The page a teacher hands back to each student, `feedback/NAME.md`.

use std::fmt::Write;
use std::path::Path;

use super::text::{passed, requirement, rerun, summary, test_message};
use super::Output;
use crate::grade::gradebook::{number, Gradebook, Submission};

pub(super) fn files(book: &Gradebook) -> Vec<Output> {
    book.submissions
        .iter()
        .map(|submission| Output {
            path: Path::new("feedback").join(format!("{}.md", submission.name)),
            text: feedback(book, submission),
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::super::tests::book;
    use super::*;

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
