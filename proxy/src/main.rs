fn main() -> std::process::ExitCode {
    tprox_relay::cli::main_with_args(std::env::args_os())
}
