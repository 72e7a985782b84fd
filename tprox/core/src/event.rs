//! The events of a run, which the runner hands to a [`Reporter`] and reporters turn into
//! output. Data flows one way: case → runner → event → reporter; a reporter never runs anything.

use crate::case::Case;
use crate::report::CaseReport;

/// Something that happened in a run.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A case began (with `--jobs` above 1, several run at once).
    CaseStarted(&'a Case),
    /// A case ended. These come in catalogue order, whatever order the cases ended in.
    CaseFinished(&'a CaseReport),
}

/// Receives a run's events.
pub trait Reporter {
    /// Called for each event, in order.
    fn report(&mut self, event: Event<'_>);
}

/// A reporter that shows nothing: for callers that only want the reports `run` returns.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Reporter for Silent {
    fn report(&mut self, _event: Event<'_>) {}
}
