//! What a conformance case is.
//!
//! A case is data plus a body, in the style of h2spec: an id that selects and filters
//! (`shutdown/one-way`), the name people know it by, the requirement it checks in words, the rules
//! it traces to, its level, and an async body that plays client and destination against one
//! running proxy.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::harness::Ctx;
use crate::outcome::Stop;
use crate::rules::Rule;

/// How much a failed case counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A failure fails the run.
    Must,
    /// A failure is reported as a warning; it fails the run only under `--strict`.
    Should,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
        })
    }
}

/// The future a case body returns.
pub type BodyFuture = Pin<Box<dyn Future<Output = Result<(), Stop>> + Send>>;

/// One conformance case.
pub struct Case {
    /// Hierarchical id, `group/name`; what `--only` and `--skip` match.
    pub id: &'static str,
    /// The name shown in human output (for the ten original phases, the original tester's name).
    pub name: &'static str,
    /// What the proxy must do, in the words of the contract.
    pub requirement: &'static str,
    /// The contract rules this case checks.
    pub rules: &'static [Rule],
    /// MUST or SHOULD: whether a failure fails the run.
    pub level: Level,
    /// Run with no other case at once: the case measures time at the millisecond scale, which
    /// other cases' load on a small machine would disturb.
    pub alone: bool,
    /// What the case takes for granted about the proxy's speed and the machine: its time
    /// limits and windows in words, so that a user can see that a verdict does not depend on
    /// either where the rule allows (published in `docs/contract.md`).
    pub assumes: &'static str,
    /// Plays client and destination; returns `Ok` when the proxy behaved.
    pub body: fn(Ctx) -> BodyFuture,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
