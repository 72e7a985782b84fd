//! The reference proxy against the whole catalogue, one test per case, through the same libtest
//! adaptor that other proxy crates use (`cargo test --test reference -- shutdown`).
//!
//! The stall timeout is short (2 s) to keep the run fast; the time windows of the timeout cases
//! scale with it.

use std::time::Duration;

fn main() -> std::process::ExitCode {
    tprox_suite::Suite::reference(env!("CARGO_BIN_EXE_tprox"))
        .stall_timeout(Duration::from_secs(2))
        .libtest_main()
}
