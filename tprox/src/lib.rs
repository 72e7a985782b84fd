//! tprox: a conformance test harness for TCP proxies.
//!
//! tprox starts any proxy program as a subprocess, plays both the client and the destination
//! server itself, and runs the cases of the contract (`docs/contract.md`, generated from the
//! catalogue by [`contract`]) against it.
//!
//! The pieces, in the order data flows through them:
//! * [`cases`]: the catalogue. Each [`case::Case`] is an id, a name, a requirement, the
//!   [`rules::Rule`]s it checks, a level, and a body written against [`harness::Ctx`] with the
//!   helpers of [`net`].
//! * [`proxy`]: starting, watching and stopping the proxy under test.
//! * [`runner`]: one fresh proxy and destination per case, cases in parallel, outcomes out.
//! * [`report`]: turning outcomes into output.
//! * [`select`]: `--only` / `--skip` patterns.
//! * [`grade`]: `tprox grade`, many submissions graded against a grading file.
//! * [`fuzz`]: `tprox fuzz`, generated scenarios judged by the contract, shrunk on failure.
//! * [`profiles`]: known real proxies as data, started with generated configurations.
//! * [`bench`]: `tprox bench`, proxies measured side by side against a direct connection.
//! * [`peer`]: `tprox peer`, the cases' client and destination behaviours, run by hand.
//! * [`matrix`]: `tprox matrix`, the catalogue against every known proxy, as a matrix.

pub mod bench;
pub mod case;
pub mod cases;
pub mod cli;
pub mod clock;
pub mod contract;
pub mod formats;
pub mod fuzz;
pub mod grade;
pub mod harness;
pub mod heartbeat;
pub mod held;
pub mod html;
pub mod matrix;
pub mod net;
pub mod peer;
pub mod probe;
pub mod profiles;
pub mod proxy;
pub mod report;
pub mod rules;
pub mod runner;
pub mod select;
pub mod suite;

pub use case::{Case, Failure, Level, Outcome};
pub use cases::CATALOGUE;
pub use rules::Rule;
pub use suite::{Suite, SuiteReport};

/// tprox's exit statuses, documented in the README and `--help`.
pub mod exit {
    /// Every selected case passed (SHOULD failures are only warnings without `--strict`).
    pub const PASSED: u8 = 0;
    /// At least one case failed: the proxy does not conform.
    pub const FAILED: u8 = 1;
    /// Bad usage, or the proxy could not be set up (did not start, exited, never listened).
    pub const SETUP: u8 = 2;
    /// The filters selected no case at all.
    pub const NOTHING_SELECTED: u8 = 3;
    /// tprox was interrupted (Ctrl-C); every proxy it started was stopped.
    pub const INTERRUPTED: u8 = 130;
}
