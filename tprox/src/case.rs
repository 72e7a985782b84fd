//! What a conformance case is, and how it ends.
//!
//! A case is data plus a body, in the style of h2spec: an id that selects and filters
//! (`shutdown/one-way`), the name people know it by, the requirement it checks in words, the rules
//! it traces to, its level, and an async body that plays client and destination against one
//! running proxy.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::harness::Ctx;
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

/// Why a case body stopped before passing.
#[derive(Debug, Clone)]
pub enum Stop {
    Fail(Failure),
    /// The case cannot run here (for example, it needs /proc); the reason says why.
    Skip(String),
}

impl From<Failure> for Stop {
    fn from(failure: Failure) -> Self {
        Stop::Fail(failure)
    }
}

/// A conformance failure, written for the person who has to fix the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What the contract required in this situation.
    pub expected: String,
    /// What tprox saw instead: bytes, offsets, who closed and when.
    pub observed: String,
    /// The mistake that usually produces this observation.
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(expected: impl Into<String>, observed: impl Into<String>) -> Self {
        Failure {
            expected: expected.into(),
            observed: observed.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// How a case ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Pass,
    Fail(Failure),
    Skip(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::Skip(_) => "skip",
        }
    }
}

impl From<Result<(), Stop>> for Outcome {
    fn from(result: Result<(), Stop>) -> Self {
        match result {
            Ok(()) => Outcome::Pass,
            Err(Stop::Fail(failure)) => Outcome::Fail(failure),
            Err(Stop::Skip(reason)) => Outcome::Skip(reason),
        }
    }
}
