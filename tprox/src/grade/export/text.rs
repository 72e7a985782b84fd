//! What Gradescope's results and the feedback page both say about a submission and its cases.

use std::fmt::Write;

use crate::grade::gradebook::{number, CaseResult, Gradebook, Status, Submission};

pub(super) fn passed(result: &CaseResult) -> bool {
    result.earns()
}

/// One line on the whole submission: how it went, and why it was not graded if it was not.
pub(super) fn summary(book: &Gradebook, submission: &Submission) -> String {
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

pub(super) fn test_output(book: &Gradebook, case: &str, result: &CaseResult) -> String {
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

pub(super) fn test_message(result: &CaseResult) -> String {
    match (&result.message, result.outcome) {
        (Some(message), _) => message.clone(),
        (None, None) => "not run: the proxy was not built or did not start".into(),
        (None, Some(verdict)) => verdict.label().into(),
    }
}

pub(super) fn requirement(case: &str) -> Option<&'static str> {
    crate::CATALOGUE
        .iter()
        .find(|c| c.id == case)
        .map(|c| c.requirement)
}

/// The command that reruns one case against the proxy in the student's own directory.
pub(super) fn rerun(book: &Gradebook, case: &str) -> String {
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
