//! Helpers shared by the integration tests. Each test crate uses some of them.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

/// Waits until none of the processes listed (one pid per line) in `pidfile` exists any more.
pub fn assert_all_gone(pidfile: &Path) {
    let pids: Vec<u32> = std::fs::read_to_string(pidfile)
        .expect("the proxy wrapper wrote its pid")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(!pids.is_empty(), "no pid was recorded");
    let deadline = Instant::now() + Duration::from_secs(5);
    for pid in pids {
        loop {
            let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Gone, or a zombie waiting for init to reap it: either way no longer running.
            let running = status
                .split_whitespace()
                .nth(2)
                .is_some_and(|state| state != "Z");
            if !running {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "process {pid} started for the proxy is still running"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Once `pidfile` lists at least `count` pids (the proxies are up), interrupts `child` with
/// SIGINT as Ctrl-C would, and returns its exit code.
pub fn interrupt_when_started(
    child: &mut std::process::Child,
    pidfile: &Path,
    count: usize,
) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(pidfile)
        .map(|t| t.lines().count())
        .unwrap_or(0)
        < count
    {
        assert!(Instant::now() < deadline, "the proxies never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    child.wait().unwrap().code()
}

/// Runs `tprox` (at `tprox`) on echo/single and shutdown/one-way with seed 7 and these options,
/// against the reference proxy, or (`broken`) against the reference pointed at a destination
/// port where nothing listens, which fails both. Returns the exit status, stdout and stderr.
pub fn two_cases(tprox: &str, broken: bool, options: &[&str]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(tprox);
    cmd.args([
        "--seed",
        "7",
        "--only",
        "echo/single",
        "--only",
        "shutdown/one-way",
    ])
    .args(options);
    match broken {
        true => cmd.args([
            "--",
            tprox,
            "__reference-proxy",
            "{dest_host}",
            "1",
            "{listen_port}",
        ]),
        false => cmd.arg("--reference"),
    };
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// A gradebook's submission: its name, total, and each case with its verdict.
pub type GradeRow = (
    String,
    serde_json::Value,
    Vec<(serde_json::Value, serde_json::Value)>,
);

/// A gradebook's rows by name: what two gradings must agree on to have graded alike.
pub fn grade_rows(book: &serde_json::Value) -> Vec<GradeRow> {
    let mut rows: Vec<GradeRow> = book["submissions"]
        .as_array()
        .expect("a gradebook has submissions")
        .iter()
        .map(|row| {
            let verdicts = row["results"]
                .as_array()
                .expect("a row has results")
                .iter()
                .map(|r| (r["case"].clone(), r["outcome"].clone()))
                .collect();
            (
                row["name"].as_str().unwrap_or_default().to_string(),
                row["total"].clone(),
                verdicts,
            )
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}
