//! `tprox grade` and `tprox grade merge` (the work is in [`crate::grade`]).

use std::path::PathBuf;

use super::*;
use crate::grade::{self, config::Grading, gradebook::Gradebook, GradeOptions, Partition};

/// Submissions graded at once per CPU, unless --jobs says: measured by ci/grading-bench (100
/// submissions on 2 cores: 1 per CPU 600 s, 2 per CPU 299 s, 4 per CPU 188 s with the same
/// grades, 8 per CPU 106 s with one correct submission's timing case failed).
const JOBS_PER_CPU: usize = 4;

const GRADE_EXAMPLES: &str = "\
Examples:
  tprox grade grading.toml submissions/*              writes grades/gradebook.{html,csv,json},
                                                      lms.csv, gradescope/*/results.json, feedback/*.md
  tprox grade grading.toml submissions/* --partition 2/4 --out grades-2
  tprox grade merge --out grades grades-*/gradebook.json
  tprox grade grading.toml submissions/* --repeat 3  three runs each: is every grade stable?
  tprox grade grading.toml submissions/* --resume    go on with a grading that was killed

The grading file (TOML) says how to build and start a submission and what each case is worth:

  [build]                      # optional; run with sh -c in a scratch copy of the submission
  command = \"make\"
  timeout = \"5m\"
  [run]
  start = \"./tcpproxy {dest_host} {dest_port} {listen_port}\"   # also {submission}, {scratch}
  stall_timeout = \"2s\"       # what the submissions were told to use
  time_limit = \"3m\"          # wall clock for all of one submission's cases
  jobs = 8                     # cases of one submission at once; also seed, retries
  [limits]                     # for every proxy process
  address_space_mib = 4096
  open_files = 1024
  cpu_seconds = 120
  memory_mib = 2048            # all of one submission's processes together
  [points]                     # points per case: the longest matching pattern wins;
  \"*\" = 1                      # cases no pattern matches are not run
  \"shutdown/\" = 3
  [sandbox]                    # optional: the kernel sandbox (bubblewrap) around each one
  mode = \"auto\"                # or \"namespaces\" (refuse without), \"none\"
  build_network = false        # may the build use the network? (the proxy never may)
  disk_mib = 1024              # its writable space
  processes = 4096             # processes and threads at once, under its own uid
  share = [\"course-tools\"]     # read-only for every submission ($TPROX_SHARE), and
                               # toolchains outside /usr that builds need
  io_uring = false             # may its processes use io_uring?
  [export]                     # optional: the LMS CSV's columns, Gradescope's visibility
  lms_id_column = \"SIS Login ID\"
  lms_score_column = \"Proxy lab\"
  gradescope_visibility = \"visible\"   # hidden, after_due_date, after_published

Each submission is copied to a scratch directory and built and run there, in a sandbox made
of Linux namespaces: it sees /usr, /bin, /lib, a few files of /etc and the shares, read-only,
and not at all the other submissions, the gradebook, the logs, the grading file's directory,
/run, /var or /home; it has only loopback (its proxy, tprox's client and destination share its
network namespace); its own pid namespace and session keyring; a seccomp filter; its own uid
when tprox runs as root; the limits above, and a memory and process ceiling for all its
processes together (cgroups). tprox grade --check-sandbox [GRADING_FILE] says what this machine
allows, and tries a grading file's boxes. A
submission that does not build, crashes, hangs, forks, floods its output or attacks its
classmates scores what its proxy earns and disturbs no other.

Exit status: 0 the gradebook was written (whatever the scores), 2 bad usage or grading file,
or the sandbox that mode = \"namespaces\" asks for is missing, 130 interrupted.";

/// Grade many proxy submissions against the catalogue.
#[derive(Debug, clap::Args)]
#[command(
    after_help = GRADE_EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_value_name = "COMMAND",
    subcommand_help_heading = "Other commands"
)]
pub(super) struct GradeArgs {
    #[command(subcommand)]
    command: Option<GradeCommand>,

    /// The grading file (TOML; see below).
    #[arg(value_name = "GRADING_FILE", required_unless_present = "check_sandbox")]
    grading_file: Option<PathBuf>,

    /// The submission directories, one per student or team; each is graded under its own
    /// directory name.
    #[arg(value_name = "SUBMISSION", required_unless_present = "check_sandbox")]
    submissions: Vec<PathBuf>,

    /// Say what sandbox this machine can give the submissions (bubblewrap, namespaces, the
    /// files they see, the system calls denied, the uid, the memory and process ceilings), by
    /// trying it, and exit: 0 if submissions would be sandboxed. With a grading file, try that
    /// file's boxes: its shares readable, its build's program found, its ceilings set.
    #[arg(long, value_name = "GRADING_FILE", num_args = 0..=1, conflicts_with = "submissions")]
    check_sandbox: Option<Option<PathBuf>>,

    /// Where to write gradebook.{json,csv,html} and each submission's logs.
    #[arg(long, value_name = "DIR", default_value = "grades")]
    out: PathBuf,

    /// Submissions graded at once [default: 4 per CPU]. A submission mostly waits (its cases'
    /// timers, its proxy's starts), so 4 per CPU grades 100 submissions in a third of the time
    /// 1 per CPU takes, with the same grades; 8 per CPU overloaded a 2-core machine enough to
    /// cost a correct proxy a timing case (docs/grading.md). Each submission's cases also run
    /// in parallel ([run] jobs in the grading file).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    jobs: Option<u16>,

    /// Grade only the K-th of N equal shares (sorted by name), for splitting a large class
    /// across machines; merge the gradebooks with tprox grade merge. Without it, the share
    /// comes from the batch system when it says: TPROX_PARTITION=K/N, a Kubernetes Indexed
    /// Job's JOB_COMPLETION_INDEX (with --partitions), or a Slurm array's SLURM_ARRAY_TASK_ID
    /// and SLURM_ARRAY_TASK_COUNT.
    #[arg(long, value_name = "K/N", value_parser = Partition::parse)]
    partition: Option<Partition>,

    /// How many shares there are, where the batch system gives only the index (a Kubernetes
    /// Indexed Job: its completions).
    #[arg(long, value_name = "N", conflicts_with = "partition", value_parser = clap::value_parser!(u16).range(1..))]
    partitions: Option<u16>,

    /// Keep each submission's scratch copy (under DIR/scratch) after grading.
    #[arg(long)]
    keep_scratch: bool,

    /// Grade each submission N times (seeds seed, seed + 1, …) and report whether its grade
    /// was stable: a case earns its points when it passed in more than half of the runs, and
    /// a case whose runs disagree is marked in the gradebook.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    repeat: u32,

    /// Go on with the grading in --out that was stopped before its end (killed, interrupted,
    /// out of time): every submission that finished was recorded as it did, and only the
    /// others are graded, with the same seed and settings. Refused, saying what differs, when
    /// the grading file, tprox, the seed, --repeat, the share or the sandbox changed. With no
    /// grading there, every submission is graded: a batch job's command can carry it always.
    #[arg(long)]
    resume: bool,
}

#[derive(Debug, clap::Subcommand)]
enum GradeCommand {
    /// Merge the gradebooks of partitions (gradebook.json files) into one.
    Merge {
        /// Where to write the merged gradebook.{json,csv,html}.
        #[arg(long, value_name = "DIR", default_value = "grades")]
        out: PathBuf,

        /// The partial gradebooks (each a gradebook.json).
        #[arg(value_name = "GRADEBOOK", required = true)]
        gradebooks: Vec<PathBuf>,
    },
}

pub(super) fn run(args: GradeArgs) -> error::Result {
    if let Some(GradeCommand::Merge { out, gradebooks }) = args.command {
        return merge_command(&out, &gradebooks);
    }
    if let Some(file) = args.check_sandbox {
        let grading = match file.or(args.grading_file) {
            Some(path) => Some(Grading::load(&path).map_err(Error::Usage)?),
            None => None,
        };
        let support = grade::sandbox::Support::probe(grading.as_ref());
        say(support.describe());
        // The description above says what does not work.
        support
            .works
            .as_ref()
            .map_err(|_| Error::Setup("the sandbox cannot be used on this machine".into()))?;
        return match support.checks_pass() {
            true => Ok(Conclusion::Passed),
            false => Err(Error::Setup(
                "the grading file's boxes lack what its submissions need (the lines with NOT)"
                    .into(),
            )),
        };
    }
    let (Some(grading_file), submissions) = (args.grading_file, args.submissions) else {
        return Err(Error::Usage(
            "give the grading file and the submission directories".into(),
        ));
    };
    let grading = Grading::load(&grading_file).map_err(Error::Usage)?;
    let submissions = grade::submission_dirs(&submissions).map_err(Error::Usage)?;
    let jobs = args.jobs.map_or_else(
        || JOBS_PER_CPU * std::thread::available_parallelism().map_or(2, usize::from),
        usize::from,
    );
    let (partition, source) = match args.partition {
        Some(partition) => (partition, None),
        None => match grade::partition_from_env(
            |name| std::env::var(name).ok(),
            args.partitions.map(usize::from),
        ) {
            Ok(Some((partition, source))) => (partition, Some(source)),
            Ok(None) => (Partition::WHOLE, None),
            Err(e) => return Err(Error::Usage(e)),
        },
    };
    let sandbox = grade::sandbox::Decision::make(&grading.sandbox).map_err(Error::Setup)?;
    if let grade::sandbox::Decision::Unsandboxed {
        warning: Some(warning),
    } = &sandbox
    {
        eprintln!("tprox grade: {warning}");
    }
    let options = GradeOptions {
        sandbox,
        grading,
        submissions,
        out: args.out.clone(),
        jobs,
        partition,
        keep_scratch: args.keep_scratch,
        repeat: args.repeat,
        resume: args.resume,
    };
    announce(&options, source);
    let book = run_interruptible(
        "tprox grade",
        "; no gradebook written (the submissions that finished are kept: the same command \
         with --resume grades the rest)",
        grade::grade(&options),
    )?
    .map_err(Error::Usage)?;
    if args.repeat > 1 {
        say_stability(&book, args.repeat);
    }
    match grade::write(&book, &args.out) {
        Ok(paths) => {
            for path in paths {
                say(format_args!("wrote {}", path.display()));
            }
            Ok(Conclusion::Passed)
        }
        Err(e) => Err(Error::Output(e)),
    }
}

fn merge_command(out: &std::path::Path, paths: &[PathBuf]) -> error::Result {
    let books = paths
        .iter()
        .map(|p| Gradebook::read_json(p))
        .collect::<std::result::Result<_, _>>()
        .map_err(Error::Usage)?;
    let merged = Gradebook::merge(books).map_err(|e| Error::Usage(format!("merge: {e}")))?;
    let missing = merged.missing_partitions();
    if !missing.is_empty() {
        eprintln!(
            "tprox grade merge: warning: partition(s) {} missing: their submissions are not in the gradebook",
            missing.join(", ")
        );
    }
    match grade::write(&merged, out) {
        Ok(written) => {
            say(format_args!(
                "merged {} gradebook(s), {} submission(s)",
                paths.len(),
                merged.submissions.len()
            ));
            for path in written {
                say(format_args!("wrote {}", path.display()));
            }
            Ok(Conclusion::Passed)
        }
        Err(e) => Err(Error::Output(e)),
    }
}

/// The line that says what is about to be graded, and where the gradebook goes.
fn announce(options: &GradeOptions, source: Option<&str>) {
    let (partition, jobs) = (options.partition, options.jobs);
    let share = partition.take(options.submissions.clone()).len();
    eprintln!(
        "tprox grade: {share} submission(s){}, {} case(s) worth {} points, {jobs} at once{}; gradebook in {}",
        if partition == Partition::WHOLE {
            String::new()
        } else {
            format!(
                " (partition {partition} of {}{})",
                options.submissions.len(),
                source.map_or(String::new(), |s| format!(", from {s}"))
            )
        },
        options.grading.cases.len(),
        grade::gradebook::number(options.grading.max_total()),
        match options.repeat {
            1 => String::new(),
            n => format!(", each graded {n} times"),
        },
        options.out.display()
    );
}

/// With `--repeat`, which submissions got different verdicts in different runs.
fn say_stability(book: &Gradebook, repeat: u32) {
    let unstable: Vec<&str> = book
        .submissions
        .iter()
        .filter(|s| !s.stable())
        .map(|s| s.name.as_str())
        .collect();
    say(match unstable.is_empty() {
        true => format!("every submission's grade was stable over {} runs", repeat),
        false => format!(
            "{} submission(s) of {} got different verdicts in {} runs: {} (marked in the \
             gradebook)",
            unstable.len(),
            book.submissions.len(),
            repeat,
            unstable.join(", ")
        ),
    });
}
