//! `tprox grade --repeat N`: one submission graded N times becomes one gradebook row.
//!
//! A case earns its points when it passed in more than half of the runs (a tie is not a
//! pass: a teacher can defend "it failed as often as it passed" as a failure), with the
//! message of a run that gave that verdict. A case whose runs disagree is marked with how
//! often it passed, and the row keeps every run's total, so that an unstable grade is seen
//! rather than averaged away.

use super::gradebook::{CaseResult, Submission};

/// Joins the runs of one submission, in run order. One run is returned as it is.
pub fn combine(mut runs: Vec<Submission>) -> Submission {
    if runs.len() <= 1 {
        return runs.pop().expect("at least one run");
    }
    let count = runs.len();
    let totals: Vec<f64> = runs.iter().map(|r| r.total).collect();
    let mut row = runs[0].clone();
    row.duration_s = runs.iter().map(|r| r.duration_s).sum();
    for (i, result) in row.results.iter_mut().enumerate() {
        let verdicts: Vec<&CaseResult> = runs.iter().filter_map(|r| r.results.get(i)).collect();
        let passed = verdicts.iter().filter(|r| r.earns()).count();
        let majority_passes = passed * 2 > count;
        if let Some(chosen) = verdicts.iter().find(|r| r.earns() == majority_passes) {
            *result = (*chosen).clone();
        }
        let outcomes = |r: &&CaseResult| r.outcome;
        let first = verdicts.first().map(outcomes);
        if verdicts.iter().map(outcomes).any(|o| Some(o) != first) {
            result.unstable = Some(format!("passed {passed} of {count} runs"));
        }
    }
    row.total = row.results.iter().map(|r| r.points).sum();
    row.run_totals = totals;
    // A limit met in any run is worth the teacher's eye.
    row.limits = runs.iter().flat_map(|r| r.limits.clone()).collect();
    row.limits.sort();
    row.limits.dedup();
    row
}

#[cfg(test)]
mod tests {
    use super::super::gradebook::Status;
    use super::*;
    use crate::verdict::Verdict;

    fn run(outcomes: &[&str]) -> Submission {
        let results: Vec<CaseResult> = outcomes
            .iter()
            .enumerate()
            .map(|(i, outcome)| CaseResult {
                case: format!("case/{i}"),
                outcome: Some(match *outcome {
                    "pass" => Verdict::Pass,
                    _ => Verdict::Fail,
                }),
                points: if *outcome == "fail" { 0.0 } else { 2.0 },
                message: (*outcome == "fail").then(|| format!("failed case/{i}")),
                unstable: None,
                accepted: None,
            })
            .collect();
        Submission {
            name: "carol".into(),
            path: "subs/carol".into(),
            status: Status::Graded,
            error: None,
            total: results.iter().map(|r| r.points).sum(),
            duration_s: 10.0,
            build: None,
            results,
            run_totals: Vec::new(),
            limits: Vec::new(),
        }
    }

    #[test]
    fn the_majority_verdict_scores_and_disagreements_are_marked() {
        let row = combine(vec![
            run(&["pass", "fail", "pass"]),
            run(&["pass", "pass", "fail"]),
            run(&["pass", "pass", "fail"]),
        ]);
        assert_eq!(row.run_totals, [4.0, 4.0, 4.0]);
        assert_eq!(row.results[0].unstable, None);
        assert_eq!(row.results[1].outcome, Some(Verdict::Pass));
        assert_eq!(
            row.results[1].unstable.as_deref(),
            Some("passed 2 of 3 runs")
        );
        assert_eq!(row.results[2].outcome, Some(Verdict::Fail));
        assert_eq!(row.results[2].message.as_deref(), Some("failed case/2"));
        assert_eq!(
            row.results[2].unstable.as_deref(),
            Some("passed 1 of 3 runs")
        );
        assert_eq!(row.total, 4.0);
        assert_eq!(row.duration_s, 30.0);
        assert!(!row.stable(), "equal totals, but cases disagreed");
    }

    #[test]
    fn a_tie_is_a_failure_and_unanimous_runs_are_stable() {
        let tie = combine(vec![run(&["pass"]), run(&["fail"])]);
        assert_eq!((tie.results[0].label(), tie.total), ("fail", 0.0));
        assert_eq!(tie.run_totals, [2.0, 0.0]);
        let same = combine(vec![run(&["pass", "fail"]), run(&["pass", "fail"])]);
        assert!(same.stable());
        assert_eq!(same.total, 2.0);
        let once = combine(vec![run(&["fail"])]);
        assert!(once.run_totals.is_empty() && once.stable());
    }
}
