//! The `tprox` command: everything is in the library ([`tprox::cli`]).

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if args
        .nth(1)
        .is_some_and(|first| first == tprox::proxy::REFERENCE_ARG)
    {
        // tprox is re-running itself as the reference proxy (see `ProxyCommand::reference`).
        return tcpproxy::cli::main_with_args(std::iter::once("tcpproxy".into()).chain(args));
    }
    ExitCode::from(tprox::cli::main())
}
