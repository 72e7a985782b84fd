//! The engine of tprox, the conformance test harness for TCP proxies: no command line, no
//! progress bars, nothing printed. The `tprox` command and the `tprox-suite` library are thin
//! layers over it.
//!
//! The pieces, in the order data flows through them (case → runner → event → reporter):
//! * [`cases`]: the catalogue ([`CATALOGUE`]). Each [`Case`] is an id, a name, a requirement,
//!   the [`Rule`]s it checks, a level, and a body written against [`harness::Ctx`] with the
//!   helpers of its `net` module. The contract these make up is [`contract::markdown`], committed as
//!   `docs/contract.md`.
//! * [`proxy`]: starting, watching and stopping the proxy under test.
//! * [`runner`]: one fresh proxy and destination per case, cases in parallel; each case's
//!   [`CaseReport`] goes out as an [`Event`] to a [`Reporter`].
//! * [`Verdict`]: what a report means (pass, warn, fail, flaky, skip), the one judgement every
//!   reporter shows; [`Summary`] counts them.
//! * [`select`]: `--only` / `--skip` patterns.
//! * [`figure`]: what a case measured (round trips, memory, CPU, descriptors), for comparing
//!   two runs.
//! * [`expect`]: expected results (`tprox-expect.toml`): a run judged against the cases a
//!   proxy is known not to pass.

#![warn(missing_docs)]

pub mod case;
pub mod cases;
mod clock;
pub mod contract;
pub mod event;
pub mod expect;
pub mod figure;
pub mod front;
pub mod harness;
mod heartbeat;
pub mod held;
mod net;
pub mod outcome;
pub mod probe;
pub mod proxy;
pub mod proxy_protocol;
pub mod report;
pub mod rules;
pub mod runner;
pub mod select;
pub mod summary;
pub mod udp;
pub mod verdict;

pub use case::{Case, Level};
pub use cases::CATALOGUE;
pub use event::{Event, Reporter};
pub use outcome::{Failure, Outcome};
pub use report::{CaseReport, SurvivalCheck};
pub use rules::Rule;
pub use runner::RunOptions;
pub use summary::Summary;
pub use verdict::Verdict;
