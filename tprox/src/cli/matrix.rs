//! `tprox matrix`: the catalogue against every known proxy (the work is in [`crate::matrix`]).

use std::path::PathBuf;
use std::time::Duration;

use indicatif::ProgressBar;

use super::*;
use crate::matrix::{self, Matrix, MatrixOptions, ProxyColumn, Verdict};
use crate::profiles::{self, Profile, PROFILES};
use crate::report::CaseReport;

const MATRIX_EXAMPLES: &str = "\
Examples:
  tprox matrix                                   every installed proxy; writes tprox-matrix/
  tprox matrix --profiles ref,nginx,haproxy --out matrix
  tprox matrix --check docs/compatibility.json   measure, then compare with a committed matrix

Each proxy is started by its profile (tprox --list-profiles) and run through the whole
catalogue, every case with a fresh instance, one proxy after the other. DIR receives
matrix.json (the data), matrix.md (a table, and why each cell that is not a pass is what it
is, from the profile's expectations file, tprox/expect/NAME.toml, the format of tprox
--expect; a cell the file does not explain, or an entry whose case passed, is warned of) and
matrix.html (one self-contained page; click a failure for
its diagnostic). Each proxy's version is what the proxy itself reports.

With --check, the measured verdicts are compared with FILE (a matrix.json) for the proxies
measured in both: each cell that changed is listed, and the exit status is 1.

Exit status: 0 the matrix was written (and matched FILE), 1 it differs from FILE, 2 bad usage
or a named profile is not installed, 130 interrupted.";

/// Run the catalogue against every known proxy and write the matrix.
#[derive(Debug, clap::Args)]
#[command(after_help = MATRIX_EXAMPLES)]
pub(super) struct MatrixArgs {
    /// Profiles to measure, comma-separated [default: every installed one].
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    profiles: Vec<String>,

    /// Where to write matrix.json, matrix.md and matrix.html.
    #[arg(long, value_name = "DIR", default_value = "tprox-matrix")]
    out: PathBuf,

    /// Compare the measured verdicts with this matrix.json, and exit 1 if any differs.
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,

    /// The stall timeout every profile is configured with, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 2.0, value_parser = positive_seconds, allow_negative_numbers = true)]
    stall_timeout: f64,

    /// Cases at once against one proxy.
    #[arg(long, short = 'j', value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,

    /// Seed for every random payload [default: random, and recorded in the matrix].
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
}

pub(super) fn run(args: MatrixArgs) -> error::Result {
    let chosen = choose(&args.profiles).map_err(Error::Usage)?;
    let committed = match &args.check {
        Some(path) => Some(Matrix::read_json(path).map_err(Error::Usage)?),
        None => None,
    };
    let options = MatrixOptions {
        // A row for every case that applies to one of the proxies; the others leave it blank.
        cases: tprox_core::cases::all()
            .into_iter()
            .filter(|case| {
                chosen.iter().any(|p| {
                    let front = p.front();
                    let applicable =
                        tprox_core::cases::applicable(front.as_ref(), p.proxy_protocol(), p.udp);
                    applicable.iter().any(|c| c.id == case.id)
                })
            })
            .collect(),
        profiles: chosen,
        stall: Duration::from_secs_f64(args.stall_timeout),
        seed: args.seed.unwrap_or_else(|| fastrand::u64(..1_000_000_000)),
        jobs: args.jobs.into(),
    };
    eprintln!(
        "tprox matrix: {} case(s) against {} proxies ({}), stall timeout {} s, seed {}",
        options.cases.len(),
        options.profiles.len(),
        options
            .profiles
            .iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join(", "),
        args.stall_timeout,
        options.seed
    );
    let mut progress = Lines::new(options.profiles.len(), options.cases.len());
    let measured = run_interruptible(
        "tprox matrix",
        "; no matrix written",
        matrix::measure(&options, &mut progress),
    )?;
    for path in matrix::write(&measured, &args.out).map_err(Error::Output)? {
        say(format_args!("wrote {}", path.display()));
    }
    for disagreement in matrix::disagreements(&measured) {
        eprintln!("tprox matrix: warning: {disagreement}");
    }
    let Some(committed) = committed else {
        return Ok(Conclusion::Passed);
    };
    let differences = measured.differences(&committed);
    let path = args.check.as_deref().unwrap_or(std::path::Path::new(""));
    if differences.is_empty() {
        say(format_args!(
            "every measured cell matches {} ({} proxies compared)",
            path.display(),
            measured
                .proxies
                .iter()
                .filter(|p| committed.proxy(&p.profile).is_some())
                .count()
        ));
        return Ok(Conclusion::Passed);
    }
    say(format_args!(
        "{} cell(s) differ from {}:",
        differences.len(),
        path.display()
    ));
    for difference in &differences {
        say(format_args!("  {difference}"));
    }
    say("a real change: measure again and commit the new matrix; a cell that flips by chance: a flake to fix in tprox");
    Ok(Conclusion::Failed)
}

/// The profiles named, or every installed one; a named profile that is not installed is an
/// error that says what to install.
fn choose(names: &[String]) -> Result<Vec<&'static Profile>, String> {
    if names.is_empty() {
        let mut chosen = Vec::new();
        for profile in PROFILES {
            match profile.program() {
                Ok(_) => chosen.push(profile),
                Err(message) => eprintln!("tprox matrix: skipping {}", message),
            }
        }
        return Ok(chosen);
    }
    let mut chosen: Vec<&'static Profile> = Vec::new();
    for name in names {
        let profile = profiles::find(name)?;
        profile.program()?;
        if !chosen.iter().any(|p| p.name == profile.name) {
            chosen.push(profile);
        }
    }
    Ok(chosen)
}

/// Progress on stderr: a line per proxy, and a bar over its cases on a terminal.
struct Lines {
    proxies: usize,
    cases: usize,
    bar: Option<ProgressBar>,
}

impl Lines {
    fn new(proxies: usize, cases: usize) -> Self {
        Lines {
            proxies,
            cases,
            bar: None,
        }
    }
}

impl matrix::Progress for Lines {
    fn proxy_started(&mut self, index: usize, profile: &Profile, version: &str) {
        eprintln!(
            "[{}/{}] {} ({version})",
            index + 1,
            self.proxies,
            profile.name
        );
        self.bar = crate::progress::bar(
            self.cases as u64,
            "      {bar:30} {pos}/{len} cases {wide_msg}",
        );
    }

    fn case_finished(&mut self, report: &CaseReport) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(report.case.id);
        }
    }

    fn proxy_finished(&mut self, column: &ProxyColumn, took: Duration) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let Some(error) = &column.setup_error {
            eprintln!("      did not start: {error}");
            return;
        }
        let counts = Matrix::counts(column);
        let n = |v| counts.get(&v).copied().unwrap_or(0);
        eprintln!(
            "      {} passed, {} failed, {} warning(s){} in {:.0} s",
            n(Verdict::Pass),
            n(Verdict::Fail),
            n(Verdict::Warn),
            match n(Verdict::Flaky) + n(Verdict::Skip) {
                0 => String::new(),
                other => format!(", {other} flaky or skipped"),
            },
            took.as_secs_f64()
        );
    }
}
