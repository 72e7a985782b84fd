//! The reference proxy binary against the whole tprox catalogue, one test per case, through the
//! same libtest adaptor any proxy crate can use: `cargo test -p tprox-relay --test conformance --
//! shutdown` runs the shutdown cases only.

use std::time::Duration;

fn main() -> std::process::ExitCode {
    let proxy = env!("CARGO_BIN_EXE_tprox-relay");
    tprox_suite::Suite::new([
        proxy,
        "{dest_host}",
        "{dest_port}",
        "{listen_port}",
        "--stall-timeout",
        "{stall_timeout}",
    ])
    .stall_timeout(Duration::from_secs(2))
    .libtest_main()
}
