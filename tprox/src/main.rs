//! The `tprox` command; everything is in the library ([`tprox::main`]).

fn main() -> std::process::ExitCode {
    tprox::main()
}
