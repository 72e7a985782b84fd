//! The catalogue against the reference proxy in its other modes: the buffered copy (the default
//! is splice on Linux), one mapping of a process that serves several, and one event loop or
//! four (the default is one per core).

use std::time::Duration;

const STALL: Duration = Duration::from_secs(2);

/// The lab form with `options` before it passes the whole catalogue.
fn passes_every_case(options: &[&str]) {
    let mut command = vec![env!("CARGO_BIN_EXE_tprox-relay")];
    command.extend_from_slice(options);
    command.extend([
        "--stall-timeout",
        "{stall_timeout}",
        "{dest_host}",
        "{dest_port}",
        "{listen_port}",
    ]);
    tprox_suite::Suite::new(command)
        .stall_timeout(STALL)
        .run()
        .assert_conforms();
}

#[test]
fn the_buffered_copy_passes_every_case() {
    passes_every_case(&["--copy", "buffered"]);
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

#[test]
fn one_event_loop_passes_every_case() {
    passes_every_case(&["--threads", "1"]);
}

/// Four event loops sharing the port, whatever the machine's cores.
#[test]
fn four_event_loops_pass_every_case() {
    passes_every_case(&["--threads", "4"]);
}
