//! The catalogue against the reference proxy in its other modes: the buffered copy (the default
//! is splice on Linux), and one mapping of a process that serves several.

use std::time::Duration;

const STALL: Duration = Duration::from_secs(2);

#[test]
fn the_buffered_copy_passes_every_case() {
    tprox_suite::Suite::new([
        env!("CARGO_BIN_EXE_tprox-relay"),
        "--copy",
        "buffered",
        "--stall-timeout",
        "{stall_timeout}",
        "{dest_host}",
        "{dest_port}",
        "{listen_port}",
    ])
    .stall_timeout(STALL)
    .run()
    .assert_conforms();
}

#[test]
fn one_mapping_of_several_passes_every_case() {
    tprox_suite::Suite::new([
        env!("CARGO_BIN_EXE_tprox-relay"),
        "-p",
        "0:127.0.0.1:9",
        "-p",
        "127.0.0.1:{listen_port}:{dest_host}:{dest_port}",
        "-p",
        "[::]:0:localhost:7",
        "-d",
        "--stall-timeout",
        "{stall_timeout}",
    ])
    .stall_timeout(STALL)
    .run()
    .assert_conforms();
}
