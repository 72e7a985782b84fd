//! What one case's run produced: the record every reporter, format and verdict reads.

use std::time::Duration;

use crate::case::Case;
use crate::outcome::{Failure, Outcome};

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// The case.
    pub case: &'static Case,
    /// How it ended (after retries, the last attempt's outcome).
    pub outcome: Outcome,
    /// How long it took.
    pub duration: Duration,
    /// The case's own events, time-stamped.
    pub trace: Vec<String>,
    /// The last lines the case's proxy printed.
    pub proxy_output: String,
    /// Set when the case passed only on a retry: the first failure. Such a case is reported as
    /// flaky, not as passed.
    pub flaky: Option<Failure>,
    /// Attempts made (1 unless retries were allowed and needed).
    pub attempts: u32,
}
