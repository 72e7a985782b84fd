//! How a case ends: passed, failed with a [`Failure`] written for the person who must fix the
//! proxy, or skipped. Its own module so that the harness (which makes failures) and the case
//! (whose body returns them) both depend on it, not on each other.

/// Why a case body stopped before passing.
#[derive(Debug, Clone)]
pub enum Stop {
    /// The proxy broke the case's requirement.
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
    /// A failure: what the contract required, what tprox saw instead.
    pub fn new(expected: impl Into<String>, observed: impl Into<String>) -> Self {
        Failure {
            expected: expected.into(),
            observed: observed.into(),
            hint: None,
        }
    }

    /// Adds the mistake that usually produces this observation.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// How a case ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The proxy did what the case requires.
    Pass,
    /// It did not; the failure says how.
    Fail(Failure),
    /// The case could not run here; the reason says why.
    Skip(String),
}

impl Outcome {
    /// `pass`, `fail` or `skip`.
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
