//! The part of libtest's command line and output that `cargo test` and cargo-nextest rely on,
//! so that each case is a test of its own. Written here rather than taken from libtest-mimic
//! because that crate brings a whole argument parser (clap) into every proxy crate that
//! dev-depends on this one.
//!
//! Understood: test-name filters, `--exact`, `--skip`, `--list` (with `--format terse`, as
//! nextest asks), `--ignored`, `--include-ignored`, `-q`/`--quiet`; accepted and without effect
//! here: `--nocapture`, `--show-output`, `--test-threads N` (the suite schedules its cases
//! itself), `--color`, `--format pretty`, `-Z`, `--report-time`, `--shuffle`.

use std::process::ExitCode;
use std::time::Instant;

/// The parsed command line of a test binary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Arguments {
    filters: Vec<String>,
    skip: Vec<String>,
    exact: bool,
    pub(crate) list: bool,
    /// Only the ignored tests: here none is known before the cases run, so none.
    ignored: bool,
    terse: bool,
}

impl Arguments {
    /// The test binary's own arguments; a bad one ends the process with libtest's message.
    pub(crate) fn from_env() -> Self {
        match Self::parse(std::env::args().skip(1)) {
            Ok(args) => args,
            Err(message) => {
                eprintln!("error: {message}");
                std::process::exit(101);
            }
        }
    }

    fn parse(mut words: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut args = Arguments::default();
        while let Some(word) = words.next() {
            let mut value = |name: &str| {
                words
                    .next()
                    .ok_or_else(|| format!("argument to option '{name}' missing"))
            };
            match word.as_str() {
                "--exact" => args.exact = true,
                "--list" => args.list = true,
                "--ignored" => args.ignored = true,
                "--include-ignored" => args.ignored = false,
                "-q" | "--quiet" => args.terse = true,
                "--skip" => args.skip.push(value("skip")?),
                "--format" => args.terse = value("format")? == "terse",
                "--test-threads" | "--color" | "-Z" | "--logfile" | "--shuffle-seed" => {
                    value(&word)?;
                }
                "--nocapture"
                | "--show-output"
                | "--report-time"
                | "--shuffle"
                | "--test"
                | "--ensure-time"
                | "--force-run-in-process" => {}
                flag if flag.starts_with("--format=") => args.terse = flag == "--format=terse",
                flag if flag.starts_with("--skip=") => args.skip.push(flag[7..].to_string()),
                flag if flag.starts_with('-') => {
                    return Err(format!(
                        "unrecognized option '{flag}' (a tprox suite takes test-name filters, \
                         --exact, --skip, --list, --ignored, --include-ignored, -q)"
                    ))
                }
                _ => args.filters.push(word),
            }
        }
        Ok(args)
    }

    /// Whether the test `name` runs: it matches a filter (all, without filters) and no `--skip`.
    pub(crate) fn selects(&self, name: &str) -> bool {
        let hit = |pattern: &str| {
            if self.exact {
                name == pattern
            } else {
                name.contains(pattern)
            }
        };
        !self.ignored
            && (self.filters.is_empty() || self.filters.iter().any(|f| hit(f)))
            && !self.skip.iter().any(|s| hit(s))
    }
}

/// How one test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    Passed,
    /// Failed, with what to show under the failure.
    Failed(String),
    /// Not run here (a skipped case).
    Ignored,
}

/// Lists the tests, or prints each selected test's ending as libtest does; the exit code is
/// libtest's: 101 when a test failed.
pub(crate) fn report(args: &Arguments, tests: Vec<(&str, Ending)>, started: Instant) -> ExitCode {
    if args.list {
        for (name, _) in &tests {
            if !args.ignored {
                println!("{name}: test");
            }
        }
        if !args.terse {
            println!(
                "\n{} tests, 0 benchmarks",
                if args.ignored { 0 } else { tests.len() }
            );
        }
        return ExitCode::SUCCESS;
    }
    let total = tests.len();
    let chosen: Vec<(&str, Ending)> = tests
        .into_iter()
        .filter(|(name, _)| args.selects(name))
        .collect();
    let plural = if chosen.len() == 1 { "" } else { "s" };
    println!("\nrunning {} test{plural}", chosen.len());
    let (mut passed, mut ignored, mut failures) = (0, 0, Vec::new());
    for (name, ending) in &chosen {
        let word = match ending {
            Ending::Passed => {
                passed += 1;
                "ok"
            }
            Ending::Ignored => {
                ignored += 1;
                "ignored"
            }
            Ending::Failed(text) => {
                failures.push((*name, text.as_str()));
                "FAILED"
            }
        };
        if args.terse {
            print!("{}", &word[..1].to_lowercase());
        } else {
            println!("test {name} ... {word}");
        }
    }
    if args.terse {
        println!();
    }
    if !failures.is_empty() {
        println!("\nfailures:\n");
        for (name, text) in &failures {
            println!("---- {name} stdout ----\n{text}\n");
        }
        println!("failures:");
        for (name, _) in &failures {
            println!("    {name}");
        }
    }
    let result = if failures.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {result}. {passed} passed; {} failed; {ignored} ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        failures.len(),
        total - chosen.len(),
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Arguments, String> {
        Arguments::parse(words.iter().map(|w| w.to_string()))
    }

    #[test]
    fn filters_select_as_libtest_does() {
        let args = parse(&["shutdown", "--skip", "reverse"]).unwrap();
        assert!(args.selects("shutdown/one-way"));
        assert!(!args.selects("shutdown/reverse"));
        assert!(!args.selects("echo/single"));
        let exact = parse(&["--exact", "echo/single", "--nocapture"]).unwrap();
        assert!(exact.selects("echo/single") && !exact.selects("echo/single-2"));
        assert!(parse(&[]).unwrap().selects("anything"));
    }

    #[test]
    fn nextest_listing_is_understood() {
        let args = parse(&["--list", "--format", "terse", "--ignored"]).unwrap();
        assert!(args.list && args.terse && args.ignored);
        assert!(!args.selects("echo/single"));
    }

    #[test]
    fn an_unknown_option_is_refused_with_what_is_understood() {
        let error = parse(&["--bogus"]).unwrap_err();
        assert!(
            error.contains("'--bogus'") && error.contains("--exact"),
            "{error}"
        );
        assert!(parse(&["--skip"]).unwrap_err().contains("missing"));
    }
}
