//! The protocol between the grading tprox and the child tprox that grades one submission in
//! its outer box, both ends in one place: the [`Job`] the parent hands down (as JSON, the
//! child's only argument after [`CHILD_ARG`]), the child's entry point ([`child_main`]), the
//! lines it prints on stdout, and the parent's reading of them ([`read_child`]).
//!
//! The lines, one per event:
//! - `case-finished`: a case ended (the parent's progress counts them);
//! - `submission {JSON}`: the submission's gradebook row, last. A child that ends without one
//!   gave no result, and the parent says so in the row it makes itself.
//!
//! Nothing else the child prints on stdout counts; its stderr is kept for the row's error.

use std::path::PathBuf;
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use super::config::Grading;
use super::gradebook::Submission;
use super::submission::{self, Places, SubmissionDir};
use crate::proxy::jail::Jail;

/// One submission's grading, handed to the child tprox in the outer box (as JSON, its only
/// argument).
#[derive(Debug, Serialize, Deserialize)]
pub struct Job {
    pub grading: PathBuf,
    pub name: String,
    pub path: PathBuf,
    pub out: PathBuf,
    pub run: Option<u32>,
    pub seed: u64,
    pub keep_scratch: bool,
    /// Only try the inner box, with this shell script in it (`--check-sandbox`): its output
    /// becomes the child's.
    #[serde(default)]
    pub probe: Option<String>,
    pub jail: Jail,
}

/// The hidden argument that makes tprox the child that grades one submission in its box.
pub const CHILD_ARG: &str = "__grade-one";

/// What the child prints on stdout, one line each: a finished case, and at the end the
/// submission's row.
const CASE_LINE: &str = "case-finished";
const RESULT_PREFIX: &str = "submission ";

/// Reads the child's lines until it closes its output: a tick per finished case, and the row.
pub(super) async fn read_child(
    stdout: tokio::process::ChildStdout,
    tick: &mut (dyn FnMut() + Send),
) -> Option<Submission> {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stdout);
    let mut line = String::new();
    let mut row = None;
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return row,
            Ok(_) => {}
        }
        let line = line.trim_end();
        if line == CASE_LINE {
            tick();
        } else if let Some(json) = line.strip_prefix(RESULT_PREFIX) {
            row = serde_json::from_str(json).ok();
        }
    }
}

/// The child tprox: grades the submission of `job` (JSON) in the outer box, printing a line
/// per finished case and its row at the end. Returns the exit status.
pub fn child_main(job: &str) -> u8 {
    let job: Job = match serde_json::from_str(job) {
        Ok(job) => job,
        Err(e) => {
            eprintln!("tprox {CHILD_ARG}: a bad job ({e}); this argument is for tprox itself");
            return 2;
        }
    };
    if let Some(fd) = job.jail.host_netns {
        // For the build's box only, never inherited by what else the child starts.
        // SAFETY: sets a flag on a descriptor the parent handed down.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    if let Some(script) = &job.probe {
        return probe(&job.jail, script);
    }
    let grading = match Grading::load(&job.grading) {
        Ok(mut grading) => {
            grading.seed = job.seed;
            grading
        }
        Err(e) => {
            eprintln!("tprox {CHILD_ARG}: {e}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tprox {CHILD_ARG}: cannot start the async runtime: {e}");
            return 2;
        }
    };
    let submission = SubmissionDir {
        name: job.name.clone(),
        path: job.path.clone(),
    };
    let places = Places {
        out: job.out.clone(),
        keep_scratch: job.keep_scratch,
        run: job.run,
    };
    let row = runtime.block_on(async {
        let mut lines = CaseLines;
        submission::grade_in(&submission, &grading, &places, Some(&job.jail), &mut lines).await
    });
    drop(runtime);
    let row = serde_json::to_string(&row).expect("a row serializes");
    println!("{RESULT_PREFIX}{row}");
    0
}

/// `script` in the inner box, its output passed on; its status as the exit status.
fn probe(jail: &Jail, script: &str) -> u8 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let status = runtime.block_on(async {
        let args = ["-c".to_string(), script.to_string()];
        jail.command("sh", &args, &jail.box_dir, false)?
            .stdin(Stdio::null())
            .status()
            .await
    });
    match status {
        Ok(status) if status.success() => 0,
        Ok(status) => {
            eprintln!("the inner box failed ({status})");
            1
        }
        Err(e) => {
            eprintln!("cannot start bwrap for the inner box: {e}");
            1
        }
    }
}

/// The child's progress: a line per finished case, which the parent counts.
struct CaseLines;

impl crate::event::Reporter for CaseLines {
    fn report(&mut self, event: crate::event::Event<'_>) {
        if let crate::event::Event::CaseFinished(_) = event {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{CASE_LINE}");
            let _ = out.flush();
        }
    }
}
