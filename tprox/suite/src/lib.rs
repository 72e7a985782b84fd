//! Testing a proxy from Rust: a one-call form for any test, and a libtest adaptor that makes
//! every case its own test in `cargo test` output.
//!
//! ```no_run
//! // tests/conformance.rs of a proxy crate, with `harness = false` in Cargo.toml.
//! // In a real crate, name the binary with env!("CARGO_BIN_EXE_myproxy").
//! fn main() -> std::process::ExitCode {
//!     tprox_suite::Suite::new(["./target/debug/myproxy"])
//!         .stall_timeout(std::time::Duration::from_secs(2))
//!         .libtest_main()
//! }
//! ```
//!
//! Or inside an ordinary `#[test]`:
//!
//! ```no_run
//! tprox_suite::Suite::new(["./target/debug/myproxy"]).run().assert_conforms();
//! ```

#![warn(missing_docs)]

mod libtest;

use std::process::ExitCode;
use std::time::Duration;

use libtest::Ending;
use tprox_core::case::Case;
use tprox_core::event::Silent;
use tprox_core::expect::{Expectations, Finding};
use tprox_core::outcome::Outcome;
use tprox_core::proxy::{ProxyCommand, REFERENCE_ARG};
use tprox_core::report::CaseReport;
use tprox_core::runner::{self, RunOptions};
use tprox_core::select::{self, Pattern};
use tprox_core::summary::{failure_details, Summary};
use tprox_core::Verdict;

/// A configured conformance run against one proxy command.
#[derive(Debug, Clone)]
pub struct Suite {
    options: RunOptions,
    only: Vec<Pattern>,
    skip: Vec<Pattern>,
    strict: bool,
    /// The expectations file's entries and its path, when one was given ([`Suite::expect`]).
    expect: Option<(std::sync::Arc<Expectations>, String)>,
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
                ..RunOptions::new(proxy, runner::defaults::STALL)
            },
            only: Vec::new(),
            skip: Vec::new(),
            strict: false,
            expect: None,
        }
    }

    /// Tests a SOCKS5 or HTTP CONNECT front started by `command`: `front` is `socks5`,
    /// `socks5:USER:PASS`, `connect` or `connect:USER:PASS`, and every client does that
    /// handshake first, naming the case's destination. Without placeholders the proxy gets
    /// `LISTEN_PORT` alone.
    ///
    /// # Panics
    /// If `command` is empty or `front` is not one of those.
    pub fn new_front<I, S>(command: I, front: &str) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let argv: Vec<String> = command.into_iter().map(Into::into).collect();
        let proxy =
            ProxyCommand::new_front(&argv).unwrap_or_else(|e| panic!("Suite::new_front: {e}"));
        let front: tprox_core::front::Front = front
            .parse()
            .unwrap_or_else(|e| panic!("Suite::new_front: {e}"));
        Suite {
            options: RunOptions {
                seed: 0x7072_6f78,
                front: Some(std::sync::Arc::new(front)),
                ..RunOptions::new(proxy, runner::defaults::STALL)
            },
            only: Vec::new(),
            skip: Vec::new(),
            strict: false,
            expect: None,
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

    /// The proxy speaks the PROXY protocol: `send:v1` or `send:v2` (it sends the header to the
    /// destination), `accept:v1` or `accept:v2` (its clients send one first), or one of each
    /// joined by a comma. Every case runs behind the headers, and the `proxy-protocol/` cases
    /// judge them.
    ///
    /// # Panics
    /// If `mode` is not one of those.
    pub fn proxy_protocol(mut self, mode: &str) -> Self {
        let send = mode
            .parse()
            .unwrap_or_else(|e| panic!("Suite::proxy_protocol: {e}"));
        self.options.proxy_protocol = Some(send);
        self
    }

    /// The proxy forwards UDP datagrams: `{listen_port}` is a UDP port, and the UDP catalogue
    /// runs instead of the TCP one (`tprox --udp`).
    pub fn udp(mut self) -> Self {
        self.options.udp = true;
        self
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

    /// Judges the run against the expectations file at `path` (`tprox-expect.toml`, as
    /// `tprox --expect` reads it): a case known not to pass shows as ignored, with its reason;
    /// one that passes though its entry says it fails is a failure (the file needs updating),
    /// and an entry's `skip` leaves its case out.
    ///
    /// # Panics
    /// If the file cannot be read or names no case of the catalogue.
    pub fn expect(mut self, path: &str) -> Self {
        let ids: Vec<&str> = self.options.cases().iter().map(|c| c.id).collect();
        let expect = Expectations::load(std::path::Path::new(path), &ids)
            .unwrap_or_else(|e| panic!("Suite::expect: {e}"));
        self.expect = Some((std::sync::Arc::new(expect), path.to_string()));
        self
    }

    /// The cases this suite selects.
    pub fn cases(&self) -> Vec<&'static Case> {
        let mut cases = select::select(&self.options.cases(), &self.only, &self.skip).0;
        if let Some((expect, _)) = &self.expect {
            let skipped: Vec<&str> = expect.skipped().collect();
            cases.retain(|case| !skipped.contains(&case.id));
        }
        cases
    }

    /// Runs the selected cases and returns their reports. Blocks; builds its own runtime.
    pub fn run(&self) -> SuiteReport {
        self.run_cases(&self.cases())
    }

    fn run_cases(&self, cases: &[&'static Case]) -> SuiteReport {
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        let result = runtime.block_on(async {
            runner::preflight(&self.options).await?;
            runner::run(cases, &self.options, &mut Silent).await
        });
        match result {
            Ok(cases) => SuiteReport {
                cases,
                setup_error: None,
                strict: self.strict,
                expect: self.expect.clone(),
            },
            Err(e) => SuiteReport {
                cases: Vec::new(),
                setup_error: Some(e.to_string()),
                strict: self.strict,
                expect: self.expect.clone(),
            },
        }
    }

    /// Runs the suite as a libtest harness: each case is a test named by its id, and cargo's
    /// filters (`cargo test --test conformance -- shutdown`) select cases. The selected cases
    /// run in parallel first; their outcomes are then reported one test each.
    pub fn libtest_main(self) -> ExitCode {
        let started = std::time::Instant::now();
        let args = libtest::Arguments::from_env();
        let chosen: Vec<&'static Case> = if args.list {
            Vec::new()
        } else {
            self.cases()
                .into_iter()
                .filter(|case| args.selects(case.id))
                .collect()
        };
        let report = if chosen.is_empty() {
            SuiteReport {
                cases: Vec::new(),
                setup_error: None,
                strict: self.strict,
                expect: self.expect.clone(),
            }
        } else {
            self.run_cases(&chosen)
        };
        let tests = self
            .cases()
            .into_iter()
            .map(|case| {
                let ending = match (report.finding(case), report.verdict(case)) {
                    (Some(Finding::KnownDeviation(reason)), _) => {
                        eprintln!("{}: known deviation ({reason})", case.id);
                        Ending::Ignored
                    }
                    (Some(Finding::UnexpectedPass(reason)), _) => Ending::Failed(format!(
                        "unexpected pass: expected to fail ({reason}); remove its entry from {}",
                        self.expect.as_ref().map_or("", |(_, path)| path.as_str())
                    )),
                    (_, verdict) => match verdict {
                        Ok((Verdict::Pass | Verdict::Flaky, _)) => Ending::Passed,
                        Ok((Verdict::Skip, _)) => Ending::Ignored,
                        Ok((Verdict::Warn, details)) => {
                            eprintln!("{}: warning (SHOULD case):\n{details}", case.id);
                            Ending::Passed
                        }
                        Ok((Verdict::Fail, details)) => Ending::Failed(details),
                        Err(why) => Ending::Failed(why),
                    },
                };
                (case.id, ending)
            })
            .collect();
        libtest::report(&args, tests, started)
    }
}

/// What a suite run found.
#[derive(Debug, Clone)]
pub struct SuiteReport {
    /// The reports of the cases that ran, in catalogue order.
    pub cases: Vec<CaseReport>,
    /// Set when the proxy could not be started: no case ran.
    pub setup_error: Option<String>,
    strict: bool,
    expect: Option<(std::sync::Arc<Expectations>, String)>,
}

impl SuiteReport {
    /// The run's counts.
    pub fn summary(&self) -> Summary {
        Summary::of(&self.cases, self.strict)
    }

    /// The reports of the cases that failed (SHOULD cases only when strict); with
    /// expectations, those that are not known deviations, and the unexpected passes.
    pub fn failures(&self) -> Vec<&CaseReport> {
        self.cases
            .iter()
            .filter(|r| match self.finding(r.case) {
                Some(finding) => !finding.is_success(),
                None => !Verdict::of(r, self.strict).is_success(),
            })
            .collect()
    }

    /// A case's finding against the expectations, when there are some and it ran.
    fn finding(&self, case: &Case) -> Option<Finding> {
        let (expect, _) = self.expect.as_ref()?;
        let report = self.cases.iter().find(|r| r.case.id == case.id)?;
        Some(expect.finding(case.id, Verdict::of(report, self.strict)))
    }

    /// True when the proxy was set up and no selected case failed.
    pub fn is_success(&self) -> bool {
        self.setup_error.is_none() && self.failures().is_empty()
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

    /// A case's verdict with the details of its failure, or why it has no verdict (the proxy
    /// could not be set up, or the case was not run).
    fn verdict(&self, case: &Case) -> Result<(Verdict, String), String> {
        if let Some(error) = &self.setup_error {
            return Err(format!("the proxy could not be set up: {error}"));
        }
        let Some(report) = self.cases.iter().find(|r| r.case.id == case.id) else {
            return Err("the case did not run".into());
        };
        if let Outcome::Skip(reason) = &report.outcome {
            eprintln!("{}: skipped ({reason})", case.id);
        }
        let verdict = Verdict::of(report, self.strict);
        Ok((verdict, failure_details(report, None, true)))
    }
}

/// Ends the test binary with one line naming the Debian package when `program` (a path, or a
/// name looked up on PATH) is missing. A missing program is the machine's setup, not a failure
/// of each test that needs it: one line says what to install, and nothing runs half-way.
pub fn require(program: &str, package: &str) {
    if !program_exists(program) {
        let binary = std::env::args().next().unwrap_or_default();
        let binary = std::path::Path::new(&binary)
            .file_name()
            .map_or(binary.clone(), |n| n.to_string_lossy().into_owned());
        // Straight to the descriptor: libtest captures what the print macros write in a test,
        // and the process ends before it would show it.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "{binary}: these tests need {program}: apt-get install {package} (ci/test installs \
             everything the tests need)"
        );
        std::process::exit(2);
    }
}

fn program_exists(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &std::path::Path| {
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return std::path::Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| executable(&dir.join(program))))
}

#[cfg(test)]
mod tests {
    #[test]
    fn programs_are_found_by_path_or_on_path() {
        assert!(super::program_exists("sh"));
        assert!(super::program_exists("/bin/sh"));
        assert!(!super::program_exists("tprox-no-such-program"));
        assert!(!super::program_exists("/nonexistent/sh"));
    }
}
