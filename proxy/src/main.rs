fn main() -> std::process::ExitCode {
    tcpproxy::cli::main_with_args(std::env::args_os())
}
