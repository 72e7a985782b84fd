//! The `tprox-relay` command; everything is in the library ([`tprox_relay::cli`]).

/// jemalloc rather than the system's allocator: every tokio task and socket registration is a
/// cache-line-aligned allocation, which glibc serves slowly and with slack (an idle pair takes
/// 1.85 KiB with jemalloc, 2.21 KiB without).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    tprox_relay::cli::main_with_args(std::env::args_os())
}
