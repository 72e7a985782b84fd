//! `tprox fuzz` as a user meets it: a clean run on the reference proxy, a failure found,
//! shrunk, saved and replayed by the printed command, and bad input explained.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

const TPROX: &str = env!("CARGO_BIN_EXE_tprox");

fn tprox() -> Command {
    Command::new(TPROX)
}

/// The asyncio fixture with `bug`, in the template style.
fn asyncio_fixture(bug: &str) -> Vec<String> {
    tprox_suite::require("python3", "python3");
    let script: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/python/asyncio_proxy.py");
    [
        "python3",
        &script.to_string_lossy(),
        "--bug",
        bug,
        "{dest_host}",
        "{dest_port}",
        "{listen_port}",
        "--stall-timeout",
        "{stall_timeout}",
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn the_reference_proxy_passes_generated_scenarios() {
    let output = tprox()
        .args([
            "fuzz",
            "--reference",
            "--cases",
            "100",
            "--seed",
            "11",
            "--stall-timeout",
            "2",
        ])
        .args(["--instance", "shared"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("100 scenario(s) passed (seed 11)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("seed 11"),
        "every run prints its seed: {stderr}"
    );
}

#[test]
fn a_failure_is_shrunk_saved_and_replayed_by_the_printed_command() {
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("minimal.json");
    let seeds = dir.path().join("regressions.txt");
    let output = tprox()
        .args(["fuzz", "--seed", "1", "--stall-timeout", "2", "--save"])
        .arg(&saved)
        .arg("--persist")
        .arg(&seeds)
        .arg("--")
        .args(asyncio_fixture("tail-loss"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    // The lost tail shows as a short stream (R5), or as the abort the proxy makes when its
    // buffer meets the shut-down socket (R6).
    let rule = ["R5 (Half-close) broken", "R6 (Termination) broken"]
        .into_iter()
        .find(|rule| stdout.contains(rule))
        .unwrap_or_else(|| panic!("the failure names R5 or R6: {stdout}"));
    let shrunk_to = stdout
        .split(" step(s) in ")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse::<usize>().ok())
        .expect("the output says how far the scenario was shrunk");
    assert!(shrunk_to <= 5, "{stdout}");
    assert!(saved.exists(), "the minimal scenario is saved");
    let persisted = std::fs::read_to_string(&seeds).expect("proptest kept the failure's seed");
    assert!(persisted.contains("cc "), "{persisted}");

    // The printed command, as a user would paste it into a shell.
    let replay = stdout
        .lines()
        .skip_while(|l| !l.contains("replay it with:"))
        .nth(1)
        .expect("a replay command is printed")
        .trim();
    let words = shlex::split(replay).expect("the replay command is valid shell");
    assert_eq!(words[0], "tprox");
    let again = Command::new(TPROX).args(&words[1..]).output().unwrap();
    let replayed = String::from_utf8_lossy(&again.stdout);
    assert_eq!(again.status.code(), Some(1), "{replayed}");
    assert!(
        replayed.contains(rule),
        "the replay fails the same way: {replayed}"
    );
}

/// `--udp`: datagram scenarios on the reference's UDP forwarding pass; a saved UDP scenario
/// replays only as one.
#[test]
fn the_reference_passes_udp_scenarios_and_they_replay_only_as_udp() {
    let output = tprox()
        .args([
            "fuzz",
            "--udp",
            "--reference",
            "--cases",
            "40",
            "--seed",
            "3",
        ])
        .args(["--stall-timeout", "2"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("40 scenario(s) passed (seed 3)"),
        "{stdout}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("udp.json");
    let scenario = "{\"steps\": [{\"do\": \"datagram\", \"conn\": 1, \"side\": \"client\", \
                    \"len\": 3000, \"fill\": 7}, {\"do\": \"datagram\", \"conn\": 1, \
                    \"side\": \"server\", \"len\": 0, \"fill\": 0}]}";
    std::fs::write(&file, scenario).unwrap();
    let replay = |udp: bool| {
        let mut command = tprox();
        command
            .arg("fuzz")
            .arg("--replay")
            .arg(&file)
            .arg("--reference");
        if udp {
            command.arg("--udp");
        }
        command.output().unwrap()
    };
    let tcp = replay(false);
    assert_eq!(tcp.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&tcp.stderr).contains("replay it with --udp"));
    let udp = replay(true);
    let stdout = String::from_utf8_lossy(&udp.stdout);
    assert_eq!(udp.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("the destination sends session 1 a datagram of 0 byte(s)"),
        "{stdout}"
    );
}

#[rstest::rstest]
#[case::udp_with_a_front(&["fuzz", "--udp", "--front", "socks5", "--reference"], "cannot be used with")]
#[case::no_proxy(&["fuzz"], "no proxy to fuzz")]
#[case::a_missing_scenario_file(&["fuzz", "--replay", "/nonexistent/s.json", "--reference"], "cannot read the scenario file")]
#[case::zero_cases(&["fuzz", "--cases", "0", "--reference"], "--cases")]
fn bad_input_is_explained(#[case] args: &[&str], #[case] message: &str) {
    let output = tprox().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(message), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_file_that_is_not_a_scenario_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.json");
    std::fs::write(&file, "{\"steps\": [{\"do\": \"dance\"}]}").unwrap();
    let output = tprox()
        .args(["fuzz", "--reference", "--replay"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is not a scenario saved by tprox fuzz"),
        "{stderr}"
    );
}
