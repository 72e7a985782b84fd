//! `tprox diff`: two runs' JSON reports compared (the work is in [`crate::diff`]).

use super::*;
use crate::diff::Diff;

const DIFF_EXAMPLES: &str = "\
Examples:
  tprox --output main.json ./myproxy …              on the main branch
  tprox --output branch.json ./myproxy …            on the pull request's branch
  tprox diff main.json branch.json                  the cases whose verdict changed
  tprox diff main.json branch.json --format markdown >> \"$GITHUB_STEP_SUMMARY\"

A regression is a case that fails the new run and did not fail the old one (a report judged
with --expect compares as judged: a known deviation is not a failure). Exit status: 0 nothing
regressed, 1 something did, 2 a report could not be read.";

/// Compare two runs' JSON reports: which cases changed their verdict, and which regressed.
#[derive(Debug, clap::Args)]
#[command(after_help = DIFF_EXAMPLES)]
pub(super) struct DiffArgs {
    /// The earlier run's JSON report (tprox --output FILE.json).
    #[arg(value_name = "OLD.json")]
    old: PathBuf,

    /// The later run's JSON report.
    #[arg(value_name = "NEW.json")]
    new: PathBuf,

    /// How to print the changes: human, json, or markdown (for a pull request comment or
    /// $GITHUB_STEP_SUMMARY).
    #[arg(long, value_name = "FORMAT", default_value = "human", value_parser = ["human", "json", "markdown"])]
    format: String,
}

pub(super) fn run(args: DiffArgs) -> error::Result {
    let diff = Diff::read(&args.old, &args.new).map_err(Error::Usage)?;
    let text = match args.format.as_str() {
        "json" => serde_json::to_string_pretty(&diff.json()).expect("JSON serializes") + "\n",
        "markdown" => diff.markdown(),
        _ => diff.human(),
    };
    print!("{text}");
    Ok(Conclusion::failed_if(!diff.is_success()))
}
