//! The `tprox` command: everything is in the library ([`tprox::cli`]).

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    let first = args.nth(1);
    if first
        .as_ref()
        .is_some_and(|first| first == tprox::proxy::REFERENCE_ARG)
    {
        // tprox is re-running itself as the reference proxy (see `ProxyCommand::reference`).
        return tcpproxy::cli::main_with_args(std::iter::once("tcpproxy".into()).chain(args));
    }
    if first
        .as_ref()
        .is_some_and(|first| first == tprox::grade::sandbox::CHILD_ARG)
    {
        // tprox is grading one submission inside its sandbox (see `grade::sandbox`).
        let job = args.next().unwrap_or_default();
        return ExitCode::from(tprox::grade::sandbox::child_main(&job.to_string_lossy()));
    }
    ExitCode::from(tprox::cli::main())
}
