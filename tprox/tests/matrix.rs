//! `tprox matrix`: the committed compatibility matrix (`docs/compatibility.json`, rendered as
//! `docs/compatibility.md`) is measured again against the real proxies, and must match.
//!
//! Needs every profile's program: Debian packages socat, haproxy, nginx, libnginx-mod-stream,
//! rinetd, redir, squid, tinyproxy, microsocks, dante-server, v2ray and nodejs; `cargo install
//! tcpproxy --version 0.4.1`; pproxy 2.7.9 from PyPI and the npm package proxy 2.2.0 under
//! ~/.cache/tprox (`ci/test` installs them all).

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use tprox::matrix::{render, Matrix, Verdict};

mod browser;

fn docs(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name)
}

fn committed() -> Matrix {
    Matrix::read_json(&docs("compatibility.json")).expect("docs/compatibility.json is a matrix")
}

fn tprox() -> Command {
    Command::cargo_bin("tprox").unwrap()
}

#[test]
fn the_committed_page_is_the_committed_data_rendered() {
    let page = std::fs::read_to_string(docs("compatibility.md")).unwrap();
    assert!(
        page == render::markdown(&committed()),
        "docs/compatibility.md is not docs/compatibility.json rendered: copy matrix.md and \
         matrix.json of one tprox matrix run together"
    );
}

#[test]
fn every_cell_of_the_committed_matrix_that_is_not_a_pass_is_explained() {
    let matrix = committed();
    assert_eq!(matrix.unexplained(), Vec::<(String, String)>::new());
    // The notes are the profiles' expectations files, which agree with every cell.
    assert_eq!(tprox::matrix::disagreements(&matrix), Vec::<String>::new());
    for name in ["ref", "ref-buffered"] {
        let reference = matrix.proxy(name).expect("the reference is in the matrix");
        assert_eq!(reference.cells.len(), tprox_core::CATALOGUE.len());
        assert!(
            reference.cells.values().all(|c| c.verdict == Verdict::Pass),
            "{name} must pass every case"
        );
    }
    // Through its fronts the reference passes everything it can be asked (without credentials,
    // the wrong-password case is skipped; HTTP has no BIND).
    for name in ["ref-socks5", "ref-connect"] {
        let reference = matrix
            .proxy(name)
            .expect("the reference's fronts are in the matrix");
        assert_eq!(
            reference.cells.len(),
            tprox_core::CATALOGUE.len() + tprox_core::cases::FRONT_CASES.len()
        );
        assert!(
            reference
                .cells
                .values()
                .all(|c| matches!(c.verdict, Verdict::Pass | Verdict::Skip)),
            "{name} must pass every case it runs"
        );
    }
    // Sending the PROXY protocol, it passes the header cases too.
    let sender = matrix
        .proxy("ref-send-proxy")
        .expect("the reference sending the PROXY protocol is in the matrix");
    assert_eq!(
        sender.cells.len(),
        tprox_core::CATALOGUE.len() + tprox_core::cases::PROXY_PROTOCOL_CASES.len()
    );
    assert!(sender.cells.values().all(|c| c.verdict == Verdict::Pass));
    // Accepting a header and sending one of its own, it passes both sides' cases (LOCAL, a v2
    // command, runs: the chained profile accepts v2).
    let chained = matrix
        .proxy("ref-chained-proxy")
        .expect("the reference accepting and sending the PROXY protocol is in the matrix");
    assert_eq!(
        chained.cells.len(),
        tprox_core::CATALOGUE.len()
            + tprox_core::cases::PROXY_PROTOCOL_CASES.len()
            + tprox_core::cases::PROXY_PROTOCOL_ACCEPT_CASES.len()
    );
    assert!(chained.cells.values().all(|c| c.verdict == Verdict::Pass));
    // Forwarding UDP, it passes the UDP catalogue.
    let udp = matrix
        .proxy("ref-udp")
        .expect("the reference forwarding UDP is in the matrix");
    assert_eq!(udp.cells.len(), tprox_core::cases::UDP_CATALOGUE.len());
    assert!(udp.cells.values().all(|c| c.verdict == Verdict::Pass));
    assert_eq!(
        matrix.cases.len(),
        tprox_core::cases::all().len(),
        "the catalogue changed since the matrix was measured: measure it again"
    );
}

/// The CI check: every proxy measured again, each cell compared with the committed one.
#[test]
fn the_measured_matrix_matches_the_committed_one() {
    let matrix = committed();
    let names: Vec<&str> = matrix.proxies.iter().map(|p| p.profile.as_str()).collect();
    let out = tempfile::tempdir().unwrap();
    let run = tprox()
        .args(["matrix", "--profiles", &names.join(","), "--out"])
        .arg(out.path())
        .arg("--check")
        .arg(docs("compatibility.json"))
        .args(["--stall-timeout", &matrix.stall_timeout_s.to_string()])
        .timeout(std::time::Duration::from_secs(1200))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(
        run.status.code(),
        Some(0),
        "the matrix changed (or a proxy is not installed: see this file's header)\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("every measured cell matches"), "{stdout}");
    let measured = Matrix::read_json(&out.path().join("matrix.json")).unwrap();
    assert_eq!(measured.proxies.len(), names.len());
    let html = std::fs::read_to_string(out.path().join("matrix.html")).unwrap();
    let bad = measured
        .proxies
        .iter()
        .flat_map(|p| p.cells.values())
        .filter(|c| c.verdict != Verdict::Pass)
        .count();
    assert_eq!(
        html.matches("<details>").count(),
        bad,
        "each failure, and each skip, expands to its diagnostic"
    );
    for proxy in &measured.proxies {
        assert!(
            html.contains(&proxy.version),
            "{} version shown",
            proxy.profile
        );
    }
    // In a real browser: no script error, and the cells drawn in their colours (pass green
    // #c8e6c9, fail red #ffcdd2). The screen is tall enough for the grid's first failures
    // below the summary table, a row per proxy.
    let page = browser::render(&out.path().join("matrix.html"), 2400);
    assert!(
        page.console.is_empty(),
        "the page logged: {:?}",
        page.console
    );
    assert_eq!(page.dom.matches("<details>").count(), bad);
    assert!(
        page.pixels_of([0xc8, 0xe6, 0xc9]) > 10_000,
        "pass cells drawn"
    );
    assert!(
        page.pixels_of([0xff, 0xcd, 0xd2]) > 1_000,
        "fail cells drawn"
    );
}

#[test]
fn a_flipped_cell_fails_the_check_and_is_named() {
    let mut tampered = committed();
    tampered.proxies.retain(|p| p.profile == "ref");
    tampered.proxies[0]
        .cells
        .get_mut("shutdown/one-way")
        .unwrap()
        .verdict = Verdict::Fail;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tampered.json");
    std::fs::write(&path, tampered.to_json()).unwrap();
    tprox()
        .args([
            "matrix",
            "--profiles",
            "ref",
            "--stall-timeout",
            "2",
            "--out",
        ])
        .arg(dir.path().join("out"))
        .arg("--check")
        .arg(&path)
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .code(1)
        .stdout(contains("1 cell(s) differ"))
        .stdout(contains("shutdown/one-way").and(contains("was fail, now pass")));
}

#[test]
fn bad_input_is_a_usage_error() {
    tprox()
        .args(["matrix", "--profiles", "ref,nope"])
        .assert()
        .code(2)
        .stderr(contains("no profile 'nope'"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-matrix.json");
    std::fs::write(&path, "{\"hello\": 1}").unwrap();
    tprox()
        .args(["matrix", "--profiles", "ref", "--check"])
        .arg(&path)
        .assert()
        .code(2)
        .stderr(contains("is not a matrix written by tprox matrix"));
}
