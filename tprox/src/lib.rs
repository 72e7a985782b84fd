//! The `tprox` command: the command line, progress and signals over [`tprox_core`], the
//! subcommands (grade, fuzz, bench, matrix, peer, profiles) and the report formats. The one
//! place where errors become exit statuses is `error`.
//!
//! This crate is a program; its library exists for the binary and for the tests of the
//! workspace. Only [`matrix`] is public, for the tests that drive it directly (fuzzing is the
//! `tprox-fuzz` crate).
//! To test a proxy from `cargo test`, use the `tprox-suite` crate instead.

// The engine's modules, under the names the command's modules have always used for them.
use tprox_core::{
    case, contract, event, expect, harness, outcome, proxy, report, rules, runner, select, summary,
    verdict,
};
use tprox_core::{Case, CATALOGUE};

mod bench;
mod cli;
mod diff;
mod error;
mod formats;
mod grade;
mod html;
mod human;
pub mod matrix;
mod peer;
mod profiles;
mod progress;
mod terminal;

pub use error::exit;

/// The `tprox` program: runs what the command line asks and returns the exit status.
pub fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os();
    let first = args.nth(1);
    if first
        .as_ref()
        .is_some_and(|first| first == proxy::REFERENCE_ARG)
    {
        // tprox is re-running itself as the reference proxy (see `ProxyCommand::reference`).
        let name = std::ffi::OsString::from("tprox-relay");
        return tprox_relay::cli::main_with_args(std::iter::once(name).chain(args));
    }
    if first
        .as_ref()
        .is_some_and(|first| first == grade::CHILD_ARG)
    {
        // tprox is grading one submission inside its sandbox (see `grade::sandbox`).
        let job = args.next().unwrap_or_default();
        return std::process::ExitCode::from(grade::child_main(&job.to_string_lossy()));
    }
    std::process::ExitCode::from(cli::main())
}
