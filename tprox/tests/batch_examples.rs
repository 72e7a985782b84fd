//! The batch-system examples that no test can run here (a Kubernetes cluster, GitHub's
//! runners), checked for what can be checked without one: each parses, its share count agrees
//! between the places that name it, it uses the variables tprox reads, and its merge runs when
//! a share failed (so that the merge says the share is missing rather than nothing running).
//! The Slurm example is run for real (`tests/slurm.rs`).

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

fn documents(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ci")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

/// The one string in `value` at `path` (keys and indices).
fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter()
        .fold(value, |v, key| match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[*key],
        })
}

#[test]
fn the_kubernetes_example_grades_as_many_shares_as_the_job_has_completions() {
    let docs = documents("kubernetes-grading-job.yaml");
    assert_eq!(docs.len(), 2, "the grading Job and the merge Job");
    let grade = &docs[0];
    assert_eq!(grade["kind"], "Job");
    assert_eq!(at(grade, &["spec", "completionMode"]), "Indexed");
    let completions = at(grade, &["spec", "completions"]).as_u64().unwrap();
    let command = at(
        grade,
        &["spec", "template", "spec", "containers", "0", "args", "0"],
    )
    .as_str()
    .unwrap();
    assert!(
        command.contains(&format!("--partitions {completions}")),
        "--partitions must equal completions ({completions}): {command}"
    );
    // The index tprox reads, and one output directory per share, which the merge collects.
    assert!(
        command.contains("--out /class/part-$JOB_COMPLETION_INDEX"),
        "{command}"
    );
    let merge = at(
        &docs[1],
        &["spec", "template", "spec", "containers", "0", "args", "0"],
    )
    .as_str()
    .unwrap();
    assert!(
        merge.starts_with("tprox grade merge") && merge.contains("/class/part-*/gradebook.json"),
        "{merge}"
    );
    let help = assert_cmd::Command::new(env!("CARGO_BIN_EXE_tprox"))
        .args(["grade", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("JOB_COMPLETION_INDEX"));
}

#[test]
fn the_github_actions_example_grades_every_share_and_merges_even_after_a_failed_one() {
    let docs = documents("github-actions-grading-example.yml");
    let jobs = &docs[0]["jobs"];
    let shares: Vec<u64> = at(jobs, &["grade", "strategy", "matrix", "share"])
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_u64().unwrap())
        .collect();
    let count = shares.len() as u64;
    assert_eq!(shares, (1..=count).collect::<Vec<_>>(), "shares 1 to N");
    assert_eq!(at(jobs, &["grade", "strategy", "fail-fast"]), false);
    let steps = at(jobs, &["grade", "steps"]).as_array().unwrap();
    let runs: String = steps
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        runs.contains(&format!("--partition ${{{{ matrix.share }}}}/{count}")),
        "--partition K/{count}: {runs}"
    );
    assert!(runs.contains("--out part-${{ matrix.share }}"), "{runs}");
    let uploaded = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact"))
        })
        .unwrap();
    assert_eq!(uploaded["with"]["path"], "part-${{ matrix.share }}");

    let merge = &jobs["merge"];
    assert_eq!(merge["needs"], "grade");
    // By default a job whose needs failed is skipped: a share that failed would leave no merge
    // at all, where the merge must run and name the share missing.
    let condition = merge["if"].as_str().unwrap_or_default();
    assert!(
        condition.contains("!cancelled()") || condition.contains("always()"),
        "the merge runs after a failed share: if: {condition:?}"
    );
    let merged = merge["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str())
        .find(|r| r.contains("grade merge"))
        .unwrap();
    assert!(merged.contains("part-*/gradebook.json"), "{merged}");
}
