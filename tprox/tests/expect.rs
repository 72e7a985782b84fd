//! `--expect FILE`: a run judged against the cases its proxy is known not to pass. A known
//! deviation leaves the run green and is marked as expected in every report format; a
//! regression and an unexpected pass fail it, each named with what to change;
//! `--update-expect` writes the file back from a run, keeping the reasons written.
//!
//! The proxy with known deviations is the reference pointed at a destination port where
//! nothing listens: it fails echo/single and shutdown/one-way. The reference itself, pointed
//! right, is that proxy fixed.

use assert_cmd::Command;
use std::path::Path;

mod common;

const TPROX: &str = env!("CARGO_BIN_EXE_tprox");

const ECHO: &str = "[\"echo/single\"]\nexpect = \"fail\"\nreason = \"it forwards nowhere\"\n";
const SHUTDOWN: &str =
    "[\"shutdown/one-way\"]\nexpect = \"fail\"\nreason = \"no half-close\"\nrule = \"R5\"\n";

/// Runs the two cases against the broken proxy (or the fixed one) with these options.
fn run(broken: bool, options: &[&str]) -> (i32, String, String) {
    common::two_cases(TPROX, broken, options)
}

fn file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn known_deviations_pass_regressions_and_unexpected_passes_fail_and_the_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let both = file(dir.path(), "both.toml", &format!("{ECHO}\n{SHUTDOWN}"));
    let one = file(dir.path(), "one.toml", SHUTDOWN);

    // Green: both failures are the known ones.
    let (code, _, err) = run(true, &["--expect", &both]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("2 known deviation(s) as expected, nothing else failed"),
        "{err}"
    );

    // A second bug: echo/single was expected to pass.
    let (code, _, err) = run(true, &["--expect", &one]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("REGRESSION: echo/single was expected to pass and failed"),
        "{err}"
    );
    assert!(!err.contains("REGRESSION: shutdown/one-way"), "{err}");

    // Fixed: both entries are now wrong, and the output gives the lines to remove.
    let (code, _, err) = run(false, &["--expect", &both]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("UNEXPECTED PASS: shutdown/one-way was expected to fail (no half-close)"),
        "{err}"
    );
    assert!(
        err.contains(SHUTDOWN),
        "the lines to remove are not given:\n{err}"
    );

    // Written back from the run with the second bug: the reason kept, the new failure added.
    let (code, _, err) = run(true, &["--expect", &one, "--update-expect"]);
    assert_eq!(code, 0, "{err}");
    let written = std::fs::read_to_string(&one).unwrap();
    assert!(written.contains(SHUTDOWN), "{written}");
    assert!(
        written.contains("[\"echo/single\"]\nexpect = \"fail\""),
        "{written}"
    );
    let (code, _, err) = run(true, &["--expect", &one]);
    assert_eq!(
        code, 0,
        "the written file does not describe the run:\n{written}\n{err}"
    );
    // And from the fixed proxy: nothing left to expect.
    run(false, &["--expect", &one, "--update-expect"]);
    let written = std::fs::read_to_string(&one).unwrap();
    assert!(!written.contains("[\""), "{written}");
}

#[test]
fn known_deviations_are_marked_as_expected_in_every_report_format() {
    let dir = tempfile::tempdir().unwrap();
    let both = file(dir.path(), "both.toml", &format!("{ECHO}\n{SHUTDOWN}"));
    let (code, junit, _) = run(true, &["--expect", &both, "--format", "junit"]);
    assert_eq!(code, 0);
    let xml = roxmltree::Document::parse(&junit).unwrap();
    let skipped: Vec<&str> = xml
        .descendants()
        .filter(|n| n.has_tag_name("skipped"))
        .filter_map(|n| n.attribute("message"))
        .collect();
    assert_eq!(
        skipped,
        [
            "expected failure: it forwards nowhere",
            "expected failure: no half-close"
        ],
        "{junit}"
    );
    assert!(
        !xml.descendants().any(|n| n.has_tag_name("failure")),
        "{junit}"
    );

    let (_, tap, _) = run(true, &["--expect", &both, "--format", "tap"]);
    assert!(tap.contains("not ok 2 shutdown/one-way"), "{tap}");
    assert!(
        tap.contains("# TODO expected failure: no half-close"),
        "{tap}"
    );

    let (_, json, _) = run(true, &["--expect", &both, "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../report.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&report)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    for case in report["cases"].as_array().unwrap() {
        assert_eq!(case["outcome"], "fail");
        assert_eq!(case["counts_as_failure"], false, "{case:#}");
        assert_eq!(case["expected"]["finding"], "known-deviation", "{case:#}");
    }
    assert_eq!(report["summary"]["expectations"]["known_deviations"], 2);

    // An unexpected pass is a failure in JUnit, with what to do.
    let (code, junit, _) = run(false, &["--expect", &both, "--format", "junit"]);
    assert_eq!(code, 1);
    assert!(
        junit.contains("unexpected pass: expected to fail (no half-close)"),
        "{junit}"
    );
}

#[test]
fn an_entry_for_no_case_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let stale = file(
        dir.path(),
        "stale.toml",
        "[\"shutdown/one-way-old\"]\nexpect = \"fail\"\nreason = \"renamed since\"\n",
    );
    let (code, _, err) = run(false, &["--expect", &stale]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("\"shutdown/one-way-old\", which is no case"),
        "{err}"
    );
    let (code, _, err) = run(false, &["--update-expect"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--expect"), "{err}");
}

/// The same file from `cargo test`: `Suite::expect` judges a run as `--expect` does.
#[test]
fn the_suite_judges_a_run_against_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let both = file(dir.path(), "both.toml", &format!("{ECHO}\n{SHUTDOWN}"));
    let one = file(dir.path(), "one.toml", SHUTDOWN);
    let suite = |broken: bool, file: &str| {
        let suite = match broken {
            true => tprox_suite::Suite::new([
                TPROX,
                "__reference-proxy",
                "{dest_host}",
                "1",
                "{listen_port}",
            ]),
            false => tprox_suite::Suite::reference(TPROX),
        };
        suite
            .only("echo/single")
            .only("shutdown/one-way")
            .expect(file)
            .run()
    };
    let known = suite(true, &both);
    assert!(known.is_success(), "{:?}", known.failures());
    known.assert_conforms();
    let regressed = suite(true, &one);
    let ids: Vec<&str> = regressed.failures().iter().map(|r| r.case.id).collect();
    assert_eq!(ids, ["echo/single"]);
    let fixed = suite(false, &both);
    let ids: Vec<&str> = fixed.failures().iter().map(|r| r.case.id).collect();
    assert_eq!(
        ids,
        ["echo/single", "shutdown/one-way"],
        "unexpected passes are failures"
    );
}

/// `tprox diff`: the reference's report against the broken proxy's lists exactly the cases
/// that changed, as regressions one way and not the other; two runs of the same proxy differ in
/// nothing; a file that is no report is named.
#[test]
fn diff_lists_exactly_the_changed_cases_and_exits_on_regressions() {
    let dir = tempfile::tempdir().unwrap();
    let [good, again, bad] = ["good", "again", "bad"].map(|n| dir.path().join(format!("{n}.json")));
    let out = |path: &Path| format!("json:{}", path.display());
    run(false, &["--output", &out(&good)]);
    run(false, &["--output", &out(&again)]);
    run(true, &["--output", &out(&bad)]);
    let diff = |old: &Path, new: &Path, format: &str| {
        let out = Command::new(TPROX)
            .arg("diff")
            .args([old, new])
            .args(["--format", format])
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
        )
    };
    let (code, text) = diff(&good, &bad, "json");
    assert_eq!(code, 1, "{text}");
    let changes: serde_json::Value = serde_json::from_str(&text).unwrap();
    let changed: Vec<(&str, &str, &str, bool)> = changes["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap(),
                c["before"].as_str().unwrap(),
                c["after"].as_str().unwrap(),
                c["regression"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changed,
        [
            ("echo/single", "pass", "fail", true),
            ("shutdown/one-way", "pass", "fail", true)
        ]
    );
    let (code, text) = diff(&bad, &good, "markdown");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.starts_with("### tprox: 2 case(s) changed, 0 regression(s)"),
        "{text}"
    );
    assert!(text.contains("| `echo/single` | fail | pass |"), "{text}");
    let (code, text) = diff(&good, &good, "human");
    assert_eq!(code, 0);
    assert!(
        text.contains("0 case(s) changed, 0 regression(s)"),
        "{text}"
    );

    let not_a_report = dir.path().join("gradebook.json");
    std::fs::write(&not_a_report, "{\"format\": \"tprox-gradebook\"}").unwrap();
    let out = Command::new(TPROX)
        .arg("diff")
        .args([&not_a_report, &good])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a tprox report"), "{err}");
}
