//! Testing a proxy from Rust: a one-call form for any test, and a libtest adaptor that makes
//! every case its own test in `cargo test` output.
//!
//! ```no_run
//! // tests/conformance.rs of a proxy crate, with `harness = false` in Cargo.toml.
//! // In a real crate, name the binary with env!("CARGO_BIN_EXE_myproxy").
//! fn main() -> std::process::ExitCode {
//!     tprox::Suite::new(["./target/debug/myproxy"])
//!         .stall_timeout(std::time::Duration::from_secs(2))
//!         .libtest_main()
//! }
//! ```
//!
//! Or inside an ordinary `#[test]`:
//!
//! ```no_run
//! tprox::Suite::new(["./target/debug/myproxy"]).run().assert_conforms();
//! ```

use std::process::ExitCode;
use std::time::Duration;

use crate::case::{Case, Level, Outcome};
use crate::proxy::{ProxyCommand, REFERENCE_ARG};
use crate::report::{failure_details, Summary};
use crate::runner::{self, CaseReport, RunOptions};
use crate::select::{self, Pattern};
use crate::CATALOGUE;

/// A configured conformance run against one proxy command.
#[derive(Debug, Clone)]
pub struct Suite {
    options: RunOptions,
    only: Vec<Pattern>,
    skip: Vec<Pattern>,
    strict: bool,
}

impl Suite {
    /// Tests the proxy started by `command` (program first). Without placeholders the classic
    /// `DEST_HOST DEST_PORT LISTEN_PORT` are appended, as on the command line.
    ///
    /// # Panics
    /// If `command` is empty.
    pub fn new<I, S>(command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let argv: Vec<String> = command.into_iter().map(Into::into).collect();
        let proxy = ProxyCommand::new(&argv).unwrap_or_else(|e| panic!("Suite::new: {e}"));
        Suite {
            options: RunOptions {
                seed: 0x7072_6f78,
                ..RunOptions::new(proxy, Duration::from_secs(10))
            },
            only: Vec::new(),
            skip: Vec::new(),
            strict: false,
        }
    }

    /// Tests the reference proxy of a `tprox` executable (the one at `tprox_exe`).
    pub fn reference(tprox_exe: &str) -> Self {
        let stall = "{stall_timeout}";
        Suite::new([
            tprox_exe,
            REFERENCE_ARG,
            "{dest_host}",
            "{dest_port}",
            "{listen_port}",
            "--stall-timeout",
            stall,
        ])
    }

    /// The stall timeout the proxy uses (default 10 s). Pass it to the proxy with the
    /// `{stall_timeout}` placeholder.
    pub fn stall_timeout(mut self, stall: Duration) -> Self {
        self.options.stall = stall;
        self
    }

    /// Runs only the cases matching `pattern` (an id prefix or a glob); repeatable.
    pub fn only(mut self, pattern: &str) -> Self {
        self.only
            .push(Pattern::parse(pattern).unwrap_or_else(|e| panic!("Suite::only: {e}")));
        self
    }

    /// Leaves out the cases matching `pattern`; repeatable.
    pub fn skip(mut self, pattern: &str) -> Self {
        self.skip
            .push(Pattern::parse(pattern).unwrap_or_else(|e| panic!("Suite::skip: {e}")));
        self
    }

    /// Seed for the random payloads.
    pub fn seed(mut self, seed: u64) -> Self {
        self.options.seed = seed;
        self
    }

    /// How many cases run at once.
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.options.jobs = jobs.max(1);
        self
    }

    /// Count failed SHOULD cases as failures.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// The cases this suite selects.
    pub fn cases(&self) -> Vec<&'static Case> {
        select::select(CATALOGUE, &self.only, &self.skip).0
    }

    /// Runs the selected cases and returns their reports. Blocks; builds its own runtime.
    pub fn run(&self) -> SuiteReport {
        self.run_cases(&self.cases())
    }

    fn run_cases(&self, cases: &[&'static Case]) -> SuiteReport {
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        let result = runtime.block_on(async {
            runner::preflight(&self.options).await?;
            runner::run(cases, &self.options, &mut NoReporter).await
        });
        match result {
            Ok(cases) => SuiteReport {
                cases,
                setup_error: None,
                strict: self.strict,
            },
            Err(e) => SuiteReport {
                cases: Vec::new(),
                setup_error: Some(e.to_string()),
                strict: self.strict,
            },
        }
    }

    /// Runs the suite as a libtest harness: each case is a test named by its id, and cargo's
    /// filters (`cargo test --test conformance -- shutdown`) select cases. The selected cases
    /// run in parallel first; their outcomes are then reported one test each.
    pub fn libtest_main(self) -> ExitCode {
        let args = libtest_mimic::Arguments::from_args();
        let chosen: Vec<&'static Case> = if args.list {
            Vec::new()
        } else {
            self.cases()
                .into_iter()
                .filter(|case| libtest_selects(&args, case.id))
                .collect()
        };
        let report = if chosen.is_empty() {
            SuiteReport {
                cases: Vec::new(),
                setup_error: None,
                strict: self.strict,
            }
        } else {
            self.run_cases(&chosen)
        };
        let trials = self
            .cases()
            .into_iter()
            .map(|case| {
                let verdict = report.verdict(case);
                let ignored = matches!(verdict, Verdict::Skipped);
                libtest_mimic::Trial::test(case.id, move || match verdict {
                    Verdict::Passed | Verdict::Skipped => Ok(()),
                    Verdict::Warning(text) => {
                        eprintln!("warning (SHOULD case):\n{text}");
                        Ok(())
                    }
                    Verdict::Failed(text) => Err(text.into()),
                    Verdict::NotRun => Err("the case did not run".into()),
                })
                .with_ignored_flag(ignored)
            })
            .collect();
        libtest_mimic::run(&args, trials).exit_code()
    }
}

/// Mirrors libtest's selection: a test runs when its name contains the filter (or equals it
/// with `--exact`) and contains no `--skip` string.
fn libtest_selects(args: &libtest_mimic::Arguments, id: &str) -> bool {
    let hit = |pattern: &str| {
        if args.exact {
            id == pattern
        } else {
            id.contains(pattern)
        }
    };
    args.filter.as_deref().is_none_or(hit) && !args.skip.iter().any(|s| hit(s))
}

struct NoReporter;

impl crate::report::Reporter for NoReporter {
    fn case_finished(&mut self, _report: &CaseReport) {}
}

/// What a suite run found.
#[derive(Debug, Clone)]
pub struct SuiteReport {
    pub cases: Vec<CaseReport>,
    /// Set when the proxy could not be started: no case ran.
    pub setup_error: Option<String>,
    strict: bool,
}

enum Verdict {
    Passed,
    Skipped,
    Warning(String),
    Failed(String),
    NotRun,
}

impl SuiteReport {
    pub fn summary(&self) -> Summary {
        Summary::of(&self.cases, self.strict)
    }

    /// The reports of the cases that failed (SHOULD cases only when strict).
    pub fn failures(&self) -> Vec<&CaseReport> {
        self.cases
            .iter()
            .filter(|r| {
                matches!(r.outcome, Outcome::Fail(_))
                    && (self.strict || r.case.level == Level::Must)
            })
            .collect()
    }

    /// Panics with every failure's diagnostics unless the proxy passed all selected cases.
    pub fn assert_conforms(&self) {
        if let Some(error) = &self.setup_error {
            panic!("the proxy could not be set up: {error}");
        }
        let failures = self.failures();
        if !failures.is_empty() {
            let details: String = failures
                .iter()
                .map(|r| {
                    format!(
                        "{}: failed\n{}",
                        r.case.name,
                        failure_details(r, None, true)
                    )
                })
                .collect();
            panic!("{}\n{details}", self.summary().line());
        }
    }

    fn verdict(&self, case: &Case) -> Verdict {
        if let Some(error) = &self.setup_error {
            return Verdict::Failed(format!("the proxy could not be set up: {error}"));
        }
        let Some(report) = self.cases.iter().find(|r| r.case.id == case.id) else {
            return Verdict::NotRun;
        };
        match &report.outcome {
            Outcome::Pass => Verdict::Passed,
            Outcome::Skip(reason) => {
                eprintln!("{}: skipped ({reason})", case.id);
                Verdict::Skipped
            }
            Outcome::Fail(_) if case.level == Level::Should && !self.strict => {
                Verdict::Warning(failure_details(report, None, true))
            }
            Outcome::Fail(_) => Verdict::Failed(failure_details(report, None, true)),
        }
    }
}
