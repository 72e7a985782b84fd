//! `tprox grade`: grading a class of proxies.
//!
//! A grading file ([`config`]) says how to build and start a submission, under which limits,
//! and what each case is worth. Every submission directory is graded in isolation
//! ([`submission`]), in a kernel sandbox where the machine allows one ([`sandbox`], whose
//! child grades through [`box_protocol`]), several at once; the results form a
//! [`gradebook::Gradebook`], written as JSON, CSV and a self-contained HTML page, with the
//! exports courses import ([`export`]). `--partition K/N` grades a fixed share, so that a large
//! class splits across machines; [`gradebook::Gradebook::merge`] joins the shares again. Each
//! finished submission is recorded at once ([`journal`]), so that `--resume` goes on with a
//! grading that was killed.

mod box_protocol;
mod ceiling;
pub mod config;
mod copy;
pub mod export;
pub mod gradebook;
mod journal;
mod limits;
pub mod repeat;
pub mod sandbox;
pub mod submission;

use crate::verdict::Verdict;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use indicatif::ProgressBar;
use tokio::sync::Semaphore;

use crate::event::{Event, Reporter};
use config::Grading;
use gradebook::{Gradebook, GradedCase, Submission};
use submission::{Places, SubmissionDir};

pub use box_protocol::{child_main, CHILD_ARG};
pub use export::write;

/// A share of the submissions: the K-th of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub index: usize,
    pub count: usize,
}

impl Partition {
    pub const WHOLE: Partition = Partition { index: 1, count: 1 };

    /// Parses `K/N`, 1 ≤ K ≤ N.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parsed = text.split_once('/').and_then(|(k, n)| {
            let (index, count) = (k.trim().parse().ok()?, n.trim().parse().ok()?);
            (1..=count)
                .contains(&index)
                .then_some(Partition { index, count })
        });
        parsed.ok_or_else(|| {
            format!("--partition {text}: expected K/N with 1 <= K <= N, such as 1/4 for the first of four shares")
        })
    }

    /// This share of `all`: sorted by name, every N-th starting at the K-th. Every machine
    /// given the same submissions computes the same shares, and each submission lands in
    /// exactly one.
    pub fn take(&self, mut all: Vec<SubmissionDir>) -> Vec<SubmissionDir> {
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all.into_iter()
            .enumerate()
            .filter(|(i, _)| i % self.count == self.index - 1)
            .map(|(_, s)| s)
            .collect()
    }
}

/// Where the batch system says which share a job is, when `--partition` is not given.
/// `TPROX_PARTITION` ("K/N") is for any scheduler that can set a variable (a GitHub Actions
/// matrix, a CI system's parallel index); Kubernetes Indexed Jobs number their pods from 0 in
/// `JOB_COMPLETION_INDEX` and leave the count to `--partitions N`; Slurm job arrays give the
/// task's id, the array's lowest id, its step and its task count.
pub fn partition_from_env(
    var: impl Fn(&str) -> Option<String>,
    partitions: Option<usize>,
) -> Result<Option<(Partition, &'static str)>, String> {
    let number = |name: &str| -> Result<Option<usize>, String> {
        var(name)
            .map(|text| {
                text.trim().parse::<usize>().map_err(|_| {
                    format!("{name}={text}: expected a whole number (set by the batch system)")
                })
            })
            .transpose()
    };
    let checked = |index: usize, count: usize, source: &'static str| {
        let partition = Partition { index, count };
        if count == 0 || index == 0 || index > count {
            return Err(format!(
                "{source} gives share {index} of {count}, which does not exist: check the job's array or completion settings"
            ));
        }
        Ok(Some((partition, source)))
    };
    if let Some(text) = var("TPROX_PARTITION") {
        let partition = Partition::parse(&text).map_err(|e| format!("TPROX_PARTITION: {e}"))?;
        return Ok(Some((partition, "TPROX_PARTITION")));
    }
    if let Some(index) = number("JOB_COMPLETION_INDEX")? {
        let Some(count) = partitions else {
            return Err("JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job): give --partitions N, the Job's completions, so that tprox knows how many shares there are".into());
        };
        return checked(index + 1, count, "JOB_COMPLETION_INDEX");
    }
    if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
        let count = number("SLURM_ARRAY_TASK_COUNT")?.ok_or(
            "SLURM_ARRAY_TASK_ID is set without SLURM_ARRAY_TASK_COUNT: run tprox as a Slurm job array task (sbatch --array)",
        )?;
        let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        if partitions.is_some_and(|n| n != count) {
            return Err(format!(
                "--partitions {} disagrees with the Slurm array's {count} tasks: leave --partitions out",
                partitions.unwrap_or_default()
            ));
        }
        let offset = id
            .checked_sub(min)
            .filter(|o| o % step == 0)
            .ok_or(format!(
                "SLURM_ARRAY_TASK_ID={id} is not in the array (lowest id {min}, step {step})"
            ))?;
        return checked(offset / step + 1, count, "SLURM_ARRAY_TASK_ID");
    }
    match partitions {
        Some(n) => Err(format!("--partitions {n} needs a share index: give --partition K/{n}, or run where JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job)")),
        None => Ok(None),
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What `tprox grade` was asked to do.
#[derive(Debug, Clone)]
pub struct GradeOptions {
    pub grading: Grading,
    pub submissions: Vec<SubmissionDir>,
    pub out: PathBuf,
    /// Submissions graded at once.
    pub jobs: usize,
    pub partition: Partition,
    pub keep_scratch: bool,
    /// Grade each submission this many times, seeds `seed`, `seed + 1`, … (at least 1).
    pub repeat: u32,
    /// Whether the submissions run in the kernel sandbox ([`sandbox::Decision::make`]).
    pub sandbox: sandbox::Decision,
    /// Go on with the grading recorded in `out` ([`journal`]): grade only the submissions it
    /// has no row for.
    pub resume: bool,
}

/// Checks the submission directories: each must exist, and names (the directories' own names)
/// must differ, since rows and log directories are named after them.
pub fn submission_dirs(paths: &[PathBuf]) -> Result<Vec<SubmissionDir>, String> {
    let mut dirs: Vec<SubmissionDir> = Vec::new();
    for path in paths {
        if !path.is_dir() {
            return Err(format!(
                "submission {} is not a directory: give one directory per submission",
                path.display()
            ));
        }
        let path = path
            .canonicalize()
            .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| format!("{} has no name to grade it under", path.display()))?;
        if let Some(other) = dirs.iter().find(|d| d.name == name) {
            return Err(format!(
                "two submissions are named '{name}' ({} and {}): rows are named after the \
                 directories, so give each a different name",
                other.path.display(),
                path.display()
            ));
        }
        dirs.push(SubmissionDir { name, path });
    }
    Ok(dirs)
}

/// Grades the submissions of the chosen partition, `jobs` at once, showing progress on stderr,
/// and records each as it finishes; with `resume`, only those the recorded grading lacks. An
/// error says why the grading could not begin (or resume).
pub async fn grade(options: &GradeOptions) -> Result<Gradebook, String> {
    crate::proxy::become_subreaper();
    let started = SystemTime::now();
    let out = absolute_out(&options.out);
    let key = journal::Key {
        tprox: env!("CARGO_PKG_VERSION").into(),
        grading_digest: options.grading.digest.clone(),
        seed: options.grading.seed,
        repeat: options.repeat.max(1),
        partition: options.partition.to_string(),
        sandbox: options.sandbox.label(),
    };
    let resumed = match options.resume {
        true => journal::Journal::resume(&out, &key)?,
        false => None,
    };
    let resuming = resumed.is_some();
    if options.resume && !resuming {
        eprintln!(
            "tprox grade: --resume: no grading to resume in {}: grading every submission",
            options.out.display()
        );
    }
    let (journal, finished) = match resumed {
        Some(resumed) => resumed,
        None => (journal::Journal::start(&out, &key)?, Vec::new()),
    };
    let mut mine = options.partition.take(options.submissions.clone());
    // Rows of submissions no longer given are not this grading's.
    let finished: Vec<Submission> = finished
        .into_iter()
        .filter(|row| mine.iter().any(|s| s.name == row.name))
        .collect();
    if resuming {
        eprintln!(
            "tprox grade: resuming: {} of {} submission(s) already graded, {} to go",
            finished.len(),
            mine.len(),
            mine.len() - finished.len()
        );
    }
    mine.retain(|s| !finished.iter().any(|row| row.name == s.name));
    let journal = Arc::new(journal);
    let progress = Progress::new(mine.len());
    let slots = Arc::new(Semaphore::new(options.jobs.max(1)));
    let places = Places {
        out: out.clone(),
        keep_scratch: options.keep_scratch,
        run: None,
    };
    // The boxes' mount points go, also when grading is interrupted (the future dropped).
    let _boxes_cleared = ClearBoxes(out.join(".box"));
    let boxes = boxes(options, out);
    let repeat = options.repeat.max(1);
    let mut tasks = Vec::new();
    for submission in mine {
        let (slots, grading, places, progress, boxes, journal) = (
            slots.clone(),
            options.grading.clone(),
            places.clone(),
            progress.clone(),
            boxes.clone(),
            journal.clone(),
        );
        let place = options
            .submissions
            .iter()
            .position(|s| *s == submission)
            .unwrap_or(0);
        tasks.push(tokio::spawn(async move {
            let _slot = slots.acquire_owned().await.expect("never closed");
            let row = grade_submission(
                &submission,
                place,
                &grading,
                &places,
                boxes.as_ref(),
                repeat,
                &progress,
            )
            .await;
            // Recorded before the slot goes to the next submission: a grading killed from now
            // on keeps this one.
            if let Err(e) = journal.record(place, &row) {
                eprintln!("tprox grade: {e}: --resume would grade it again");
            }
            row
        }));
    }
    let mut submissions = finished;
    for task in tasks {
        match task.await {
            Ok(graded) => submissions.push(graded),
            Err(e) => eprintln!(
                "tprox grade: grading a submission failed inside tprox: {}",
                crate::terminal::printable(&e.to_string())
            ),
        }
    }
    progress.done();
    // Only the submissions' own directories were under it; leave no empty husk.
    let _ = std::fs::remove_dir(options.out.join("scratch"));
    // In the share's order, whichever grading graded each.
    let order = options.partition.take(options.submissions.clone());
    submissions.sort_by_key(|row| order.iter().position(|s| s.name == row.name));
    Ok(gradebook(options, started, submissions))
}

/// The output directory, absolute (submissions run in directories of their own, where a
/// relative path would point elsewhere) and existing: the sandbox hides it from every
/// submission.
fn absolute_out(out: &Path) -> PathBuf {
    let _ = std::fs::create_dir_all(out);
    out.canonicalize()
        .or_else(|_| std::path::absolute(out))
        .unwrap_or_else(|_| out.to_path_buf())
}

/// What the sandbox needs to know to box each submission, when grading is sandboxed; warns
/// about tools on PATH that the boxes will hide.
fn boxes(options: &GradeOptions, out: PathBuf) -> Option<sandbox::Boxes> {
    let boxes = match &options.sandbox {
        sandbox::Decision::Sandboxed { .. } => Some(sandbox::Boxes {
            settings: options.grading.sandbox.clone(),
            class: sandbox::class_places(
                &options
                    .submissions
                    .iter()
                    .map(|s| s.path.clone())
                    .collect::<Vec<_>>(),
            ),
            grading_dir: grading_dir(&options.grading),
            out,
            ceilings: ceiling::Mechanism::probe(),
        }),
        sandbox::Decision::Unsandboxed { .. } => None,
    };
    if let Some(boxes) = &boxes {
        let hidden: Vec<PathBuf> = boxes
            .class
            .iter()
            .chain([&boxes.grading_dir, &boxes.out])
            .cloned()
            .collect();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut tools = sandbox::hidden_tools(&path, &boxes.settings.share, &hidden);
        tools.dedup();
        if !tools.is_empty() {
            let tools: Vec<String> = tools.iter().map(|t| t.display().to_string()).collect();
            eprintln!(
                "tprox grade: note: the submissions' boxes show /usr, /bin, /lib, a few files of \
                 /etc and the grading file's shares, so their builds will not find what is in \
                 these directories of PATH: {}. Add what they need to [sandbox] share",
                tools.join(", ")
            );
        }
    }
    boxes
}

/// Grades one submission `repeat` times (a fresh box each time) and joins the runs.
async fn grade_submission(
    submission: &SubmissionDir,
    place: usize,
    grading: &Grading,
    places: &Places,
    boxes: Option<&sandbox::Boxes>,
    repeat: u32,
    progress: &Progress,
) -> Submission {
    progress.started(&submission.name);
    let mut counter = CaseCounter {
        progress: progress.clone(),
        name: submission.name.clone(),
        done: 0,
        total: grading.cases.len() * repeat as usize,
        started: std::time::Instant::now(),
    };
    let mut runs = Vec::new();
    for run in 0..repeat {
        // Each run a different seed; the first run's logs where a single run puts them.
        let mut grading = grading.clone();
        grading.seed = grading.seed.wrapping_add(u64::from(run));
        let places = match run {
            0 => places.clone(),
            _ => places.for_run(run + 1),
        };
        let job = submission::Run {
            submission,
            grading: &grading,
            places: &places,
            place,
        };
        runs.push(match boxes {
            Some(boxes) => sandbox::grade_boxed(boxes, job, &mut || counter.tick()).await,
            None => submission::grade(job, &mut counter).await,
        });
    }
    let graded = repeat::combine(runs);
    // Whatever escaped its process group and outlived its parent dies now.
    let _ = tokio::task::spawn_blocking(crate::proxy::sweep_orphans).await;
    if !crate::proxy::stopping() {
        progress.finished(&graded, grading.max_total());
    }
    graded
}

/// The gradebook of a finished grading.
fn gradebook(
    options: &GradeOptions,
    started: SystemTime,
    submissions: Vec<Submission>,
) -> Gradebook {
    let grading = &options.grading;
    Gradebook {
        format: gradebook::FORMAT.into(),
        version: gradebook::VERSION,
        tprox: env!("CARGO_PKG_VERSION").into(),
        grading_file: grading.path.display().to_string(),
        grading_digest: grading.digest.clone(),
        seed: grading.seed,
        stall_timeout_s: grading.stall.as_secs_f64(),
        started: humantime::format_rfc3339_seconds(started).to_string(),
        partitions: vec![options.partition.to_string()],
        cases: grading
            .cases
            .iter()
            .map(|(case, points)| GradedCase {
                id: case.id.into(),
                name: case.name.into(),
                points: *points,
            })
            .collect(),
        max_total: grading.max_total(),
        repeat: options.repeat,
        submissions,
        start: grading.start.clone(),
        export: grading.export.clone(),
        sandbox: options.sandbox.label(),
    }
}

/// Removes the (empty) mount points of the sandbox's boxes when dropped.
struct ClearBoxes(PathBuf);

impl Drop for ClearBoxes {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(&self.0) {
            for entry in entries.flatten() {
                // Only empty directories: a mount point still in use is never emptied here.
                let _ = std::fs::remove_dir(entry.path());
            }
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The grading file's directory, which the sandbox hides (it may hold hidden tests or a model
/// solution).
fn grading_dir(grading: &Grading) -> PathBuf {
    let file = grading
        .path
        .canonicalize()
        .unwrap_or_else(|_| grading.path.clone());
    file.parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

/// Counts one submission's finished cases for the progress display.
struct CaseCounter {
    progress: Progress,
    name: String,
    done: usize,
    total: usize,
    /// When its first case began, for the estimate of what is left.
    started: std::time::Instant,
}

impl CaseCounter {
    fn tick(&mut self) {
        self.done += 1;
        let left = time_left(self.started.elapsed(), self.done, self.total)
            .map(|left| format!(", {left} left"))
            .unwrap_or_default();
        self.progress.case_done(
            &self.name,
            format!("{}/{} cases{left}", self.done, self.total),
        );
    }
}

/// What is left of work of which `done` of `total` pieces took `elapsed`, at the same pace, in
/// words ("about 40 s", "about 12 min"); nothing before the first piece or after the last.
fn time_left(elapsed: std::time::Duration, done: usize, total: usize) -> Option<String> {
    if done == 0 || done >= total {
        return None;
    }
    let left = elapsed.as_secs_f64() / done as f64 * (total - done) as f64;
    Some(match left {
        s if s < 90.0 => format!("about {:.0} s", s.max(1.0)),
        s if s < 5400.0 => format!("about {:.0} min", s / 60.0),
        s => format!("about {:.1} h", s / 3600.0),
    })
}

impl Reporter for CaseCounter {
    fn report(&mut self, event: Event<'_>) {
        if let Event::CaseFinished(_) = event {
            self.tick();
        }
    }
}

/// Progress over the submissions: a bar listing those in progress on a terminal, one line per
/// finished submission otherwise.
#[derive(Clone)]
struct Progress {
    bar: Option<ProgressBar>,
    running: Arc<Mutex<Vec<(String, String)>>>,
    finished: Arc<Mutex<usize>>,
    total: usize,
    /// When grading began: the pace so far estimates the time left.
    started: std::time::Instant,
}

impl Progress {
    fn new(total: usize) -> Self {
        let bar = crate::progress::bar(total as u64, "{bar:30} {pos}/{len} graded · {wide_msg}");
        if let Some(bar) = &bar {
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
        }
        Progress {
            bar,
            running: Arc::default(),
            finished: Arc::default(),
            total,
            started: std::time::Instant::now(),
        }
    }

    fn started(&self, name: &str) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.to_string(), "starting".into()));
        self.show();
    }

    fn case_done(&self, name: &str, state: String) {
        if let Some(entry) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
            .find(|(n, _)| n == name)
        {
            entry.1 = state;
        }
        self.show();
    }

    fn finished(&self, graded: &Submission, max: f64) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(n, _)| n != &graded.name);
        let count = {
            let mut finished = self.finished.lock().unwrap_or_else(|e| e.into_inner());
            *finished += 1;
            *finished
        };
        let failed = graded
            .results
            .iter()
            .filter(|r| r.outcome == Some(Verdict::Fail))
            .count();
        let mut line = format!(
            "[{count}/{}] {}: {} of {} points",
            self.total,
            graded.name,
            gradebook::number(graded.total),
            gradebook::number(max)
        );
        match (&graded.error, &graded.build) {
            (Some(_), Some(build)) if !build.ok => {
                line.push_str(&format!(" (build failed: see {})", build.log))
            }
            (Some(error), _) => line.push_str(&format!(
                " ({}: {})",
                graded.status.label(),
                error.lines().next().unwrap_or("")
            )),
            (None, _) if failed > 0 => line.push_str(&format!(" ({failed} case(s) failed)")),
            (None, _) => {}
        }
        line.push_str(&format!(" in {:.1} s", graded.duration_s));
        if let Some(left) = time_left(self.started.elapsed(), count, self.total) {
            line.push_str(&format!(
                "; {left} left for the {} others",
                self.total - count
            ));
        }
        if !graded.run_totals.is_empty() {
            let totals: Vec<String> = graded
                .run_totals
                .iter()
                .map(|t| gradebook::number(*t))
                .collect();
            let unstable = graded
                .results
                .iter()
                .filter(|r| r.unstable.is_some())
                .count();
            line.push_str(&match graded.stable() {
                true => format!("; stable over {} runs", totals.len()),
                false => format!(
                    "; UNSTABLE over {} runs: totals {}, {unstable} case(s) changed verdict",
                    totals.len(),
                    totals.join(", ")
                ),
            });
        }
        let line = crate::terminal::one_line(&line);
        match &self.bar {
            Some(bar) => {
                bar.println(line);
                bar.inc(1);
            }
            None => eprintln!("{line}"),
        }
        self.show();
    }

    fn show(&self) {
        if let Some(bar) = &self.bar {
            let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let text: Vec<String> = running
                .iter()
                .map(|(name, state)| format!("{name} {state}"))
                .collect();
            let finished = *self.finished.lock().unwrap_or_else(|e| e.into_inner());
            let left = time_left(self.started.elapsed(), finished, self.total)
                .map(|left| format!("{left} left · "))
                .unwrap_or_default();
            bar.set_message(crate::terminal::one_line(&format!(
                "{left}grading {}",
                text.join(", ")
            )));
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(names: &[&str]) -> Vec<SubmissionDir> {
        names
            .iter()
            .map(|n| SubmissionDir {
                name: n.to_string(),
                path: PathBuf::from(n),
            })
            .collect()
    }

    #[test]
    fn partitions_cover_every_submission_exactly_once() {
        let all = dirs(&["e", "a", "d", "b", "c", "f", "g"]);
        let mut seen = Vec::new();
        for index in 1..=3 {
            let share = Partition { index, count: 3 }.take(all.clone());
            assert!(share.len() >= 2 && share.len() <= 3, "shares are balanced");
            seen.extend(share.into_iter().map(|s| s.name));
        }
        seen.sort();
        assert_eq!(seen, ["a", "b", "c", "d", "e", "f", "g"]);
        // Deterministic, whatever order the directories were given in.
        let again =
            Partition { index: 2, count: 3 }.take(dirs(&["g", "f", "e", "d", "c", "b", "a"]));
        let names: Vec<_> = again.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["b", "e"]);
    }

    #[test]
    fn partition_text_is_checked() {
        assert_eq!(
            Partition::parse("2/4"),
            Ok(Partition { index: 2, count: 4 })
        );
        for bad in ["0/4", "5/4", "4", "a/b", "1/0"] {
            assert!(Partition::parse(bad).unwrap_err().contains("K/N"), "{bad}");
        }
    }

    fn from(vars: &[(&str, &str)], partitions: Option<usize>) -> Result<Option<String>, String> {
        let var = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        };
        partition_from_env(var, partitions)
            .map(|found| found.map(|(p, source)| format!("{p} from {source}")))
    }

    #[test]
    fn each_scheduler_names_its_share() {
        assert_eq!(from(&[], None), Ok(None));
        assert_eq!(
            from(&[("TPROX_PARTITION", "2/4")], None),
            Ok(Some("2/4 from TPROX_PARTITION".into()))
        );
        assert_eq!(
            from(&[("JOB_COMPLETION_INDEX", "0")], Some(3)),
            Ok(Some("1/3 from JOB_COMPLETION_INDEX".into()))
        );
        // Slurm arrays may start anywhere and step: --array=10-16:3 is 10, 13, 16.
        let slurm = |id: &str| {
            from(
                &[
                    ("SLURM_ARRAY_TASK_ID", id),
                    ("SLURM_ARRAY_TASK_MIN", "10"),
                    ("SLURM_ARRAY_TASK_STEP", "3"),
                    ("SLURM_ARRAY_TASK_COUNT", "3"),
                ],
                None,
            )
        };
        assert_eq!(slurm("10"), Ok(Some("1/3 from SLURM_ARRAY_TASK_ID".into())));
        assert_eq!(slurm("16"), Ok(Some("3/3 from SLURM_ARRAY_TASK_ID".into())));
        assert!(slurm("11").unwrap_err().contains("not in the array"));
    }

    #[test]
    fn incomplete_or_impossible_settings_say_what_is_missing() {
        for (vars, partitions, expected) in [
            (
                &[("JOB_COMPLETION_INDEX", "1")][..],
                None,
                "give --partitions N",
            ),
            (
                &[("JOB_COMPLETION_INDEX", "3")][..],
                Some(3),
                "share 4 of 3",
            ),
            (
                &[("JOB_COMPLETION_INDEX", "x")][..],
                Some(3),
                "whole number",
            ),
            (
                &[("SLURM_ARRAY_TASK_ID", "1")][..],
                None,
                "without SLURM_ARRAY_TASK_COUNT",
            ),
            (&[][..], Some(4), "needs a share index"),
            (
                &[("TPROX_PARTITION", "5/4")][..],
                None,
                "TPROX_PARTITION: --partition 5/4",
            ),
        ] {
            let error = from(vars, partitions).unwrap_err();
            assert!(
                error.contains(expected),
                "{error:?} should say {expected:?}"
            );
        }
    }

    #[test]
    fn the_time_left_follows_the_pace_so_far() {
        assert_eq!(time_left(std::time::Duration::from_secs(10), 0, 4), None);
        assert_eq!(time_left(std::time::Duration::from_secs(10), 4, 4), None);
        assert_eq!(
            time_left(std::time::Duration::from_secs(10), 1, 4).as_deref(),
            Some("about 30 s")
        );
        assert_eq!(
            time_left(std::time::Duration::from_secs(500), 10, 100).as_deref(),
            Some("about 75 min")
        );
        assert_eq!(
            time_left(std::time::Duration::from_secs(3600), 1, 3).as_deref(),
            Some("about 2.0 h")
        );
    }
}
