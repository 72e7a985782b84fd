//! Machine reports: the JSON validates against its documented schema, the JUnit XML parses and
//! its counts match, the TAP is well formed. Each on a passing and on a failing run.

use assert_cmd::Command;

mod common;

const TPROX: &str = env!("CARGO_BIN_EXE_tprox");

/// A run of two passing cases against the reference, or of failing ones against the reference
/// pointed at a port where nothing listens.
fn run(failing: bool, extra: &[&str]) -> (i32, String) {
    let (code, stdout, _) = common::two_cases(TPROX, failing, extra);
    (code, stdout)
}

fn schema() -> serde_json::Value {
    serde_json::from_str(include_str!("../report.schema.json")).unwrap()
}

#[test]
fn json_validates_against_the_schema_and_counts_match() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    for failing in [false, true] {
        let (code, text) = run(failing, &["--format", "json"]);
        assert_eq!(code, if failing { 1 } else { 0 });
        let report: serde_json::Value = serde_json::from_str(&text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&report)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{errors:?}\n{text}");
        assert_eq!(report["seed"], 7);
        assert_eq!(report["summary"]["total"], 2);
        let failed = if failing { 2 } else { 0 };
        assert_eq!(report["summary"]["failed"], failed);
        let cases = report["cases"].as_array().unwrap();
        assert_eq!(
            cases.iter().filter(|c| c["outcome"] == "fail").count(),
            failed
        );
        if failing {
            assert!(cases[0]["message"]["observed"].as_str().unwrap().len() > 3);
        }
    }
}

#[test]
fn a_report_that_breaks_the_schema_is_caught() {
    // The schema check itself can fail: a report missing its summary does not validate.
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let (_, text) = run(false, &["--format", "json"]);
    let mut report: serde_json::Value = serde_json::from_str(&text).unwrap();
    report.as_object_mut().unwrap().remove("summary");
    assert!(!validator.is_valid(&report));
}

#[test]
fn junit_parses_and_its_counts_match() {
    for failing in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.xml");
        let (code, _) = run(failing, &["--output", path.to_str().unwrap()]);
        assert_eq!(code, if failing { 1 } else { 0 });
        let xml = std::fs::read_to_string(&path).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let cases: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(cases.len(), 2);
        let failures = doc
            .descendants()
            .filter(|n| n.has_tag_name("failure"))
            .count();
        assert_eq!(failures, if failing { 2 } else { 0 });
        let suite = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite"))
            .unwrap();
        assert_eq!(suite.attribute("tests"), Some("2"));
        assert_eq!(
            suite.attribute("failures"),
            Some(if failing { "2" } else { "0" })
        );
    }
}

#[test]
fn tap_is_well_formed() {
    for failing in [false, true] {
        let (_, text) = run(failing, &["--format", "tap"]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "TAP version 13");
        assert_eq!(lines[1], "1..2");
        let results: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with("ok ") || l.starts_with("not ok "))
            .collect();
        assert_eq!(results.len(), 2);
        for (i, line) in results.iter().enumerate() {
            let number = line
                .trim_start_matches("not ")
                .trim_start_matches("ok ")
                .split(' ')
                .next()
                .unwrap();
            assert_eq!(number, (i + 1).to_string());
        }
        assert_eq!(
            results.iter().filter(|l| l.starts_with("not ok")).count(),
            if failing { 2 } else { 0 }
        );
        if failing {
            // Every failure carries a YAML block with what was expected and observed.
            assert!(
                text.contains("  ---\n  rules: ")
                    && text.contains("  observed: ")
                    && text.contains("  ...\n")
            );
        }
    }
}

#[test]
fn several_reports_from_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let tap = dir.path().join("r.tap");
    let junit = dir.path().join("junit-out");
    let (code, stdout) = run(
        false,
        &[
            "--output",
            json.to_str().unwrap(),
            "--output",
            tap.to_str().unwrap(),
            "--output",
            &format!("junit:{}", junit.display()),
        ],
    );
    assert_eq!(code, 0);
    assert!(
        stdout.ends_with("2 passed, 0 failed\n"),
        "human output stays on stdout"
    );
    assert!(std::fs::read_to_string(json)
        .unwrap()
        .contains("\"tprox-report\""));
    assert!(std::fs::read_to_string(tap)
        .unwrap()
        .starts_with("TAP version 13"));
    assert!(std::fs::read_to_string(junit)
        .unwrap()
        .contains("<testsuite"));
}

#[test]
fn an_output_without_a_known_format_is_a_usage_error() {
    Command::new(TPROX)
        .args(["--reference", "--output", "report.weird"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("FORMAT:FILE"));
}

/// The run itself is done and judged; only the file is missing: its own status, not "bad usage".
#[test]
fn a_report_that_cannot_be_written_exits_with_its_own_status() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("report.json");
    Command::new(TPROX)
        .args(["--reference", "--only", "echo/single", "--output"])
        .arg(format!("json:{}", path.display()))
        .assert()
        .code(i32::from(tprox::exit::OUTPUT))
        .stdout(predicates::str::contains("1 passed, 0 failed"))
        .stderr(predicates::str::contains(
            "tprox: cannot write the report to",
        ));
}
