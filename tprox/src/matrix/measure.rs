//! Measuring the matrix: the whole catalogue against each profile in turn, each case with a
//! fresh instance, as the main run does.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use super::model::{CaseRow, Cell, Matrix, ProxyColumn, FORMAT, VERSION};
use crate::case::Case;
use crate::event::{Event, Reporter};
use crate::profiles::{self, Profile};
use crate::report::CaseReport;
use crate::rules;
use crate::runner::{self, RunOptions};
use crate::verdict::Verdict;

/// What to measure.
#[derive(Debug, Clone)]
pub struct MatrixOptions {
    pub profiles: Vec<&'static Profile>,
    pub cases: Vec<&'static Case>,
    pub stall: Duration,
    pub seed: u64,
    /// Cases at once against one proxy.
    pub jobs: usize,
}

/// What the measurement tells as it goes (the command line prints it).
pub trait Progress {
    fn proxy_started(&mut self, index: usize, profile: &Profile, version: &str);
    fn case_finished(&mut self, report: &CaseReport);
    fn proxy_finished(&mut self, column: &ProxyColumn, took: Duration);
}

/// Runs the cases against every profile, one profile after the other.
pub async fn measure(options: &MatrixOptions, progress: &mut dyn Progress) -> Matrix {
    let started = SystemTime::now();
    let mut proxies = Vec::new();
    for (index, profile) in options.profiles.iter().enumerate() {
        let version = profile.version();
        progress.proxy_started(index, profile, &version);
        let began = Instant::now();
        let mut column = ProxyColumn {
            profile: profile.name.into(),
            about: profile.about.into(),
            version,
            setup_error: None,
            cells: BTreeMap::new(),
        };
        match run_profile(profile, options, progress).await {
            Ok(reports) => {
                let expected = profile.expectations();
                for report in &reports {
                    let notes = expected
                        .get(report.case.id)
                        .map(|entry| entry.reason.clone())
                        .into_iter()
                        .collect();
                    column
                        .cells
                        .insert(report.case.id.into(), Cell::of(report, notes));
                }
            }
            Err(message) => column.setup_error = Some(message),
        }
        progress.proxy_finished(&column, began.elapsed());
        proxies.push(column);
    }
    Matrix {
        format: FORMAT.into(),
        version: VERSION,
        tprox: env!("CARGO_PKG_VERSION").into(),
        started: humantime::format_rfc3339_seconds(started).to_string(),
        stall_timeout_s: options.stall.as_secs_f64(),
        seed: options.seed,
        cases: options
            .cases
            .iter()
            .map(|case| CaseRow {
                id: case.id.into(),
                name: case.name.into(),
                level: case.level.to_string(),
                rules: rules::list(case.rules),
            })
            .collect(),
        proxies,
    }
}

/// Where a matrix and the profiles' expectations files disagree, one line each: a cell that
/// is not a pass with no entry to explain it, an entry whose case passed (the file is then
/// out of date), a cell whose note is not its entry's reason (the matrix was measured with an
/// older file). Columns of proxies with no profile here are left alone.
pub fn disagreements(matrix: &Matrix) -> Vec<String> {
    let mut out = Vec::new();
    for column in &matrix.proxies {
        let Ok(profile) = profiles::find(&column.profile) else {
            continue;
        };
        let expected = profile.expectations();
        let file = format!("tprox/expect/{}.toml", profile.name);
        for (id, cell) in &column.cells {
            let entry = expected.get(id);
            let name = &column.profile;
            match (cell.verdict, entry) {
                (Verdict::Pass, Some(_)) => out.push(format!(
                    "{name} × {id} passed, but {file} expects it to fail: remove the entry"
                )),
                (Verdict::Fail | Verdict::Warn | Verdict::Flaky, None) => out.push(format!(
                    "{name} × {id} is not a pass and no entry of {file} explains it"
                )),
                (Verdict::Fail | Verdict::Warn | Verdict::Flaky, Some(entry))
                    if cell.notes != [entry.reason.clone()] =>
                {
                    out.push(format!(
                        "{name} × {id}: the matrix's note is not the reason {file} gives"
                    ))
                }
                _ => {}
            }
        }
    }
    out
}

async fn run_profile(
    profile: &Profile,
    options: &MatrixOptions,
    progress: &mut dyn Progress,
) -> Result<Vec<CaseReport>, String> {
    // The profile's configuration files live as long as its cases run.
    let scratch = profiles::scratch_dir()?;
    let command = profile.command(scratch.path())?;
    let run = RunOptions {
        seed: options.seed,
        jobs: options.jobs,
        front: profile.front().map(std::sync::Arc::new),
        proxy_protocol: profile.proxy_protocol(),
        udp: profile.udp,
        ..RunOptions::new(command, options.stall)
    };
    // Of the matrix's rows, those that apply to this proxy (a plain forwarder has no
    // handshake for the front cases to judge).
    let applicable = run.cases();
    let cases: Vec<&'static Case> = options
        .cases
        .iter()
        .copied()
        .filter(|case| applicable.iter().any(|c| c.id == case.id))
        .collect();
    runner::preflight(&run).await.map_err(|e| e.to_string())?;
    let mut forward = Forward(progress);
    runner::run(&cases, &run, &mut forward)
        .await
        .map_err(|e| e.to_string())
}

/// Passes the runner's events on to the progress display.
struct Forward<'a>(&'a mut dyn Progress);

impl Reporter for Forward<'_> {
    fn report(&mut self, event: Event<'_>) {
        if let Event::CaseFinished(report) = event {
            self.0.case_finished(report);
        }
    }
}
