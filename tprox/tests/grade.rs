//! `tprox grade` as a course would use it: a class with misbehaving submissions is graded,
//! every misbehaviour is contained and scored, partial gradebooks merge, and bad input is
//! refused with a message.
//!
//! The submissions are shell scripts around the reference proxy built into tprox, so each one
//! misbehaves in exactly one known way.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::PredicateBooleanExt;
use serde_json::Value;

mod browser;
mod common;
use common::{assert_all_gone, grade_rows, interrupt_when_started};

const TPROX: &str = env!("CARGO_BIN_EXE_tprox");

/// A start script's body after this prelude ends by starting the good proxy.
const GOOD: &str = "exec \"$TPROX_EXE\" __reference-proxy \"$@\"";

/// A grading file's text with the kernel sandbox required: tprox's binary (the honest
/// submissions' proxy) is shared with the submissions, which cannot see anything else of the
/// class. `tests/hostile.rs` checks the containment itself.
fn sandboxed(grading: &str) -> String {
    format!("{grading}\n[sandbox]\nmode = \"namespaces\"\nshare = [\"{TPROX}\"]\n")
}

/// A grading file's text without the sandbox: for tests of what contains accidents without it
/// (process groups, rlimits, the orphan sweep), whose submissions record their pids in the
/// class's directory, which a sandbox would hide.
fn unsandboxed(grading: &str) -> String {
    format!("{grading}\n[sandbox]\nmode = \"none\"\n")
}

/// The variables through which batch systems name a job's share.
const PARTITION_VARS: [&str; 6] = [
    "TPROX_PARTITION",
    "JOB_COMPLETION_INDEX",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_STEP",
];

/// A class in a temporary directory: a grading file and one directory per submission, each
/// holding `tcpproxy`, a shell script.
struct Class {
    dir: tempfile::TempDir,
    pids: PathBuf,
}

impl Class {
    fn new(grading: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("grading.toml"), grading).unwrap();
        let pids = dir.path().join("pids");
        std::fs::write(&pids, "").unwrap();
        Class { dir, pids }
    }

    fn submit(&self, name: &str, script: &str) -> PathBuf {
        let path = self.dir.path().join("subs").join(name);
        std::fs::create_dir_all(&path).unwrap();
        let script_path = path.join("tcpproxy");
        std::fs::write(&script_path, format!("#!/bin/sh\n{script}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn grade(&self, extra: &[String]) -> assert_cmd::assert::Assert {
        self.grade_with(extra, &[])
    }

    /// Grades with these variables set, as a batch system sets them, and none of the others
    /// that choose a partition.
    fn grade_with(&self, extra: &[String], vars: &[(&str, &str)]) -> assert_cmd::assert::Assert {
        let mut cmd = Command::new(TPROX);
        for name in PARTITION_VARS {
            cmd.env_remove(name);
        }
        cmd.envs(vars.iter().copied());
        cmd.arg("grade")
            .arg(self.dir.path().join("grading.toml"))
            .args(extra)
            .env("TPROX_EXE", TPROX)
            .env("PIDS", &self.pids)
            .current_dir(self.dir.path())
            .timeout(Duration::from_secs(240));
        cmd.assert()
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn gradebook(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("gradebook.json")).unwrap()).unwrap()
}

fn submission<'a>(book: &'a Value, name: &str) -> &'a Value {
    book["submissions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no row for {name} in {book:#}"))
}

/// The exports agree with the gradebook: one Gradescope results.json and one feedback page
/// per submission with its total, and an LMS CSV row each.
fn assert_exports_match(out: &Path, book: &Value) {
    let lms = std::fs::read_to_string(out.join("lms.csv")).unwrap();
    let mut lines = lms.lines();
    assert_eq!(lines.next(), Some("SIS Login ID,tprox"));
    let rows: Vec<&str> = lines.collect();
    let submissions = book["submissions"].as_array().unwrap();
    assert_eq!(rows.len(), submissions.len(), "{lms}");
    for (row, s) in rows.iter().zip(submissions) {
        let (name, total) = (s["name"].as_str().unwrap(), s["total"].as_f64().unwrap());
        assert_eq!(
            row.split(',').collect::<Vec<_>>(),
            [name, &total.to_string()]
        );
        let results: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("gradescope").join(name).join("results.json"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            results["score"].as_f64(),
            Some(total),
            "{name}: {results:#}"
        );
        let tests = results["tests"].as_array().unwrap();
        assert_eq!(tests.len(), s["results"].as_array().unwrap().len());
        let scored: f64 = tests.iter().map(|t| t["score"].as_f64().unwrap()).sum();
        assert_eq!(scored, total, "{name}");
        let page =
            std::fs::read_to_string(out.join("feedback").join(format!("{name}.md"))).unwrap();
        assert!(
            page.starts_with(&format!("# {name}: {total} of ")),
            "{page}"
        );
    }
}

fn messages(row: &Value) -> String {
    row["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["message"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn misbehaving_submissions_are_contained_and_scored() {
    let class = Class::new(&unsandboxed(
        r#"
[run]
start = "sh ./tcpproxy {dest_host} {dest_port} {listen_port}"
stall_timeout = 2
startup_timeout = 3
time_limit = 4
jobs = 5

[limits]
address_space_mib = 3000
open_files = 900
cpu_seconds = 77

[points]
"echo/" = 1
"shutdown/one-way" = 3
"#,
    ));
    let subs = [
        class.submit("good", GOOD),
        // Children in its own process group, and a daemon that leaves the group (setsid).
        class.submit(
            "forker",
            &format!(
                "sleep 3600 & echo $! >> \"$PIDS\"\n\
                 setsid sleep 3600 </dev/null >/dev/null 2>&1 & echo $! >> \"$PIDS\"\n{GOOD}"
            ),
        ),
        // Megabytes of output without a newline, while it serves.
        class.submit(
            "flooder",
            &format!("head -c 5000000 /dev/zero | tr '\\0' x &\n{GOOD}"),
        ),
        // Never listens: hangs at start.
        class.submit("sleeper", "echo $$ >> \"$PIDS\"\nexec sleep 3600"),
        // Serves one connection at a time, so chains wait for their windows: the time limit
        // ends it.
        class.submit(
            "stuck",
            "exec \"$TPROX_EXE\" __reference-proxy \"$@\" --max-connections 1",
        ),
        // Records the limits it runs under.
        class.submit(
            "limited",
            &format!("echo \"$(ulimit -v) $(ulimit -n) $(ulimit -t)\" > \"$PIDS.limits\"\n{GOOD}"),
        ),
    ];
    let out = class.out("grades");
    let mut args: Vec<String> = subs.iter().map(|p| p.display().to_string()).collect();
    args.extend(["--jobs", "6", "--out"].map(String::from));
    args.push(out.display().to_string());
    let started = Instant::now();
    let run = class.grade(&args).success();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&run.get_output().stderr).into_owned();
    let book = gradebook(&out);
    assert_eq!(book["max_total"], 6.0, "{book:#}");

    for name in ["good", "forker", "flooder", "limited"] {
        let row = submission(&book, name);
        assert_eq!(row["status"], "graded", "{name}: {row:#}");
        assert_eq!(row["total"], 6.0, "{name} lost points: {}", messages(row));
    }
    // Everything the forker started is gone: the group's child, and the daemon that left the
    // group (re-parented to tprox and swept).
    assert_all_gone(&class.pids);
    assert!(
        std::fs::read_to_string(&class.pids)
            .unwrap()
            .lines()
            .count()
            >= 3,
        "the forker and the sleeper recorded their pids"
    );

    let sleeper = submission(&book, "sleeper");
    assert_eq!(sleeper["status"], "did-not-start", "{sleeper:#}");
    assert_eq!(sleeper["total"], 0.0);
    assert!(
        sleeper["error"].as_str().unwrap().contains("never"),
        "the error says the proxy never listened: {sleeper:#}"
    );

    let stuck = submission(&book, "stuck");
    assert_eq!(stuck["status"], "graded");
    assert!(stuck["total"].as_f64().unwrap() < 6.0, "{stuck:#}");
    assert!(
        messages(stuck).contains("time limit"),
        "cases cut short by the time limit say so: {}",
        messages(stuck)
    );
    // The stuck submission is bounded by its time limit (4 s) plus a case's own windows, not
    // by how long its cases would wait.
    assert!(
        elapsed < Duration::from_secs(60),
        "grading took {elapsed:?}: something was not contained"
    );

    // setrlimit reached the proxy: `ulimit -v` is in KiB.
    let limits = std::fs::read_to_string(format!("{}.limits", class.pids.display())).unwrap();
    assert_eq!(limits.trim(), format!("{} 900 77", 3000 * 1024));

    // The reports: CSV with a row per submission, HTML with every name and the failures.
    let csv = std::fs::read_to_string(out.join("gradebook.csv")).unwrap();
    assert_eq!(csv.lines().next().unwrap().split(',').count(), 4 + 4 + 1);
    let html = std::fs::read_to_string(out.join("gradebook.html")).unwrap();
    for name in ["good", "forker", "flooder", "sleeper", "stuck", "limited"] {
        assert!(csv.contains(&format!("\n{name},")), "{name} in {csv}");
        assert!(
            html.contains(&format!("data-name=\"{name}\"")),
            "{name} in the HTML"
        );
    }
    assert!(html.contains("<details>") && html.contains("time limit"));
    assert_exports_match(&out, &gradebook(&out));
    assert!(stderr.contains("[6/6]"), "progress lines: {stderr}");
    // Scratch copies are gone; the submissions' own directories are untouched.
    assert!(!out.join("scratch").exists());
    assert_eq!(std::fs::read_dir(&subs[0]).unwrap().count(), 1);
}

/// A UDP lab (`[run] udp = true`), in the sandbox: graded on the UDP catalogue alone; a
/// forwarder that ignores the idle timeout loses that case's points, and a TCP proxy handed in
/// for a UDP lab passes no datagram and does not start.
#[test]
fn a_udp_class_is_graded_on_the_udp_cases() {
    let class = Class::new(&sandboxed(
        "[run]\nstart = \"./tcpproxy {dest_host} {dest_port} {listen_port} {stall_timeout}\"\n\
         stall_timeout = 2\nudp = true\n[points]\n\"*\" = 1\n\"udp/sessions\" = 3\n",
    ));
    let reference = "exec \"$TPROX_EXE\" __reference-proxy";
    let subs = [
        class.submit(
            "good",
            &format!("{reference} --udp \"$1\" \"$2\" \"$3\" --stall-timeout \"$4\""),
        ),
        class.submit(
            "never-expires",
            &format!("{reference} --udp \"$1\" \"$2\" \"$3\" --stall-timeout 600"),
        ),
        class.submit("tcp", &format!("{reference} \"$1\" \"$2\" \"$3\"")),
    ];
    let out = class.out("grades");
    let mut args: Vec<String> = subs.iter().map(|p| p.display().to_string()).collect();
    args.extend(["--jobs", "3", "--out"].map(String::from));
    args.push(out.display().to_string());
    class.grade(&args).success();
    let book = gradebook(&out);
    // Seven UDP cases, udp/sessions worth 3; no TCP case graded.
    assert_eq!(book["max_total"], 9.0, "{book:#}");
    let good = submission(&book, "good");
    assert_eq!(good["status"], "graded", "{good:#}");
    assert_eq!(good["total"], 9.0, "{}", messages(good));
    let lazy = submission(&book, "never-expires");
    assert_eq!(lazy["total"], 8.0, "{}", messages(lazy));
    let failed: Vec<&str> = lazy["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["points"] == 0.0)
        .map(|r| r["case"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["udp/idle-expiry"], "{}", messages(lazy));
    let tcp = submission(&book, "tcp");
    assert_eq!(tcp["status"], "did-not-start", "{tcp:#}");
    assert_eq!(tcp["total"], 0.0);
}

#[test]
fn partitions_grade_disjoint_shares_that_merge_into_one_gradebook() {
    let class = Class::new(&sandboxed(
        "[run]\nstart = \"./tcpproxy\"\nstall_timeout = 2\n[points]\n\"echo/single\" = 1\n",
    ));
    let subs: Vec<String> = ["ann", "ben", "cat"]
        .iter()
        .map(|name| class.submit(name, GOOD).display().to_string())
        .collect();
    let mut books = Vec::new();
    for k in 1..=2 {
        // A relative --out, as people type it: it must not depend on where submissions run.
        let mut args = subs.clone();
        args.extend([
            "--partition".into(),
            format!("{k}/2"),
            "--out".into(),
            format!("part-{k}"),
        ]);
        class.grade(&args).success();
        books.push(class.out(&format!("part-{k}")).join("gradebook.json"));
    }
    let names = |book: &Value| -> Vec<String> {
        book["submissions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    let first = gradebook(books[0].parent().unwrap());
    let second = gradebook(books[1].parent().unwrap());
    assert_eq!(names(&first), ["ann", "cat"]);
    assert_eq!(names(&second), ["ben"]);

    // The same shares when the batch system names them: a Kubernetes Indexed Job's pod 1 of
    // 2, and a Slurm array's task 1 of --array=1-2.
    for (out, vars, extra, expected) in [
        (
            "k8s",
            vec![("JOB_COMPLETION_INDEX", "1")],
            vec!["--partitions", "2"],
            vec!["ben"],
        ),
        (
            "slurm",
            vec![
                ("SLURM_ARRAY_TASK_ID", "1"),
                ("SLURM_ARRAY_TASK_MIN", "1"),
                ("SLURM_ARRAY_TASK_COUNT", "2"),
            ],
            vec![],
            vec!["ann", "cat"],
        ),
    ] {
        let mut args = subs.clone();
        args.extend(extra.iter().map(|a| a.to_string()));
        args.extend(["--out".into(), out.to_string()]);
        let graded = class.grade_with(&args, &vars).success();
        let stderr = String::from_utf8_lossy(&graded.get_output().stderr).into_owned();
        assert!(stderr.contains(&format!("from {}", vars[0].0)), "{stderr}");
        assert_eq!(names(&gradebook(&class.out(out))), expected, "{out}");
    }

    let merged = class.out("merged");
    Command::new(TPROX)
        .args(["grade", "merge", "--out"])
        .arg(&merged)
        .args(&books)
        .assert()
        .success()
        .stdout(predicates::str::contains(
            "merged 2 gradebook(s), 3 submission(s)",
        ));
    let book = gradebook(&merged);
    assert_eq!(names(&book), ["ann", "ben", "cat"]);
    for row in book["submissions"].as_array().unwrap() {
        assert_eq!(row["total"], 1.0, "every share was really graded: {row:#}");
    }
    assert_eq!(book["partitions"], serde_json::json!(["1/2", "2/2"]));
    assert!(merged.join("gradebook.html").exists() && merged.join("gradebook.csv").exists());
    assert_exports_match(&merged, &book);

    // A share missing is pointed out; the same share twice is refused.
    let only_first = Command::new(TPROX)
        .args(["grade", "merge", "--out"])
        .arg(class.out("m2"))
        .arg(&books[0])
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&only_first.get_output().stderr).contains("2/2 missing"));
    Command::new(TPROX)
        .args(["grade", "merge", "--out"])
        .arg(class.out("m3"))
        .args([&books[0], &books[0]])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("appears twice"));
}

/// `ci/gradescope/run_autograder` in Gradescope's layout (a temporary /autograder): the
/// results.json it leaves is the submission's, with a test per graded case.
#[test]
fn the_gradescope_autograder_script_leaves_the_submissions_results() {
    let class = Class::new(&sandboxed(
        "[run]\nstart = \"./tcpproxy\"\nstall_timeout = 2\n[points]\n\"echo/\" = 2\n\
         [export]\ngradescope_visibility = \"after_published\"\n",
    ));
    let root = class.out("autograder");
    std::fs::create_dir_all(root.join("source")).unwrap();
    std::fs::copy(
        class.out("grading.toml"),
        root.join("source").join("grading.toml"),
    )
    .unwrap();
    let submitted = class.submit("student", GOOD);
    std::fs::rename(submitted, root.join("submission")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/gradescope/run_autograder");
    Command::new(script)
        .env("AUTOGRADER", &root)
        .env("TPROX", TPROX)
        .env("TPROX_EXE", TPROX)
        .env("PIDS", &class.pids)
        .timeout(Duration::from_secs(240))
        .assert()
        .success();
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("results").join("results.json")).unwrap(),
    )
    .unwrap();
    let tests = results["tests"].as_array().unwrap();
    let echo_cases = tprox_core::CATALOGUE
        .iter()
        .filter(|c| c.id.starts_with("echo/"))
        .count();
    assert_eq!(tests.len(), echo_cases, "{results:#}");
    assert_eq!(results["score"].as_f64(), Some(2.0 * echo_cases as f64));
    assert!(tests
        .iter()
        .all(|t| t["status"] == "passed" && t["visibility"] == "after_published"));

    // A grading that goes wrong (here the grading file) is an autograder failure, not a 0.
    std::fs::write(root.join("source").join("grading.toml"), "[run]\n").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/gradescope/run_autograder");
    Command::new(script)
        .env("AUTOGRADER", &root)
        .env("TPROX", TPROX)
        .timeout(Duration::from_secs(60))
        .assert()
        .failure();
    let results = std::fs::read_to_string(root.join("results").join("results.json")).unwrap();
    assert!(results.contains("could not grade"), "{results}");
}

/// `--repeat 3` on a class where one submission's proxy misbehaves in its second run only:
/// that submission is reported unstable, scored by the majority, every run's logs kept; then
/// the gradebook page is opened in a real browser.
#[test]
fn repeated_grading_marks_changing_verdicts_and_the_page_renders_in_a_browser() {
    // Unsandboxed: the build counts the runs in a file outside its scratch copy, which is
    // what the sandbox forbids (tests/hostile.rs repeats in the sandbox).
    let class = Class::new(&unsandboxed(
        "[build]\ncommand = \"sh build.sh\"\n\
         [run]\nstart = \"./tcpproxy {dest_host} {dest_port} {listen_port} --stall-timeout {stall_timeout}\"\n\
         stall_timeout = 2\n[points]\n\"echo/single\" = 1\n\"timeout/lazy-forward\" = 2\n",
    ));
    let steady = class.submit("steady", GOOD);
    std::fs::write(steady.join("build.sh"), "true\n").unwrap();
    // The build runs once per run, in a fresh copy: it numbers the runs. In run 2 the proxy
    // gets a stall timeout of 30 s where the grading file promised 2.
    let wobbly = class.submit(
        "wobbly",
        &format!(
            "if [ \"$(cat run-number)\" = 2 ]; then exec \"$TPROX_EXE\" __reference-proxy \"$1\" \"$2\" \"$3\" --stall-timeout 30; fi\n{GOOD}"
        ),
    );
    let runs = class.out("runs");
    std::fs::write(
        wobbly.join("build.sh"),
        format!(
            "n=$(cat '{0}' 2>/dev/null || echo 0); n=$((n + 1)); echo $n > '{0}'; echo $n > run-number\n",
            runs.display()
        ),
    )
    .unwrap();
    let graded = class
        .grade(&[
            steady.display().to_string(),
            wobbly.display().to_string(),
            "--repeat".into(),
            "3".into(),
            "--out".into(),
            "grades".into(),
        ])
        .success();
    let stdout = String::from_utf8_lossy(&graded.get_output().stdout).into_owned();
    assert!(
        stdout.contains("1 submission(s) of 2 got different verdicts in 3 runs: wobbly"),
        "{stdout}"
    );
    assert_eq!(std::fs::read_to_string(&runs).unwrap().trim(), "3");
    let out = class.out("grades");
    let book = gradebook(&out);
    assert_eq!(book["repeat"], 3);
    let row = submission(&book, "steady");
    assert_eq!(
        row["run_totals"],
        serde_json::json!([3.0, 3.0, 3.0]),
        "{row:#}"
    );
    assert!(row["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r.get("unstable").is_none()));
    let row = submission(&book, "wobbly");
    assert_eq!(
        row["run_totals"],
        serde_json::json!([3.0, 1.0, 3.0]),
        "{row:#}"
    );
    assert_eq!(row["total"], 3.0, "the majority passed");
    let lazy = &row["results"][1];
    assert_eq!(lazy["case"], "timeout/lazy-forward");
    assert_eq!(lazy["outcome"], "pass");
    assert_eq!(lazy["unstable"], "passed 2 of 3 runs");
    for run in ["", "run-2/", "run-3/"] {
        let report = out.join(format!("logs/wobbly/{run}report.json"));
        assert!(report.exists(), "{} kept", report.display());
    }
    let csv = std::fs::read_to_string(out.join("gradebook.csv")).unwrap();
    assert!(
        csv.contains("wobbly,graded,3,3,3 1 3,timeout/lazy-forward,"),
        "{csv}"
    );

    let page = browser::render(&out.join("gradebook.html"), 1000);
    assert!(
        page.console.is_empty(),
        "the page logged: {:?}",
        page.console
    );
    for wanted in [
        "class pass rate",
        "id=\"histogram\"",
        "data-count=\"2\"",
        "href=\"logs/wobbly/report.json\"",
        "href=\"logs/steady/\"",
        "passed 2 of 3 runs",
        "totals 3, 1, 3",
    ] {
        assert!(
            page.dom.contains(wanted),
            "{wanted} not in the page:\n{}",
            page.dom
        );
    }
    // Drawn, not only present: the histogram's bar (#5c6bc0) and the dashed outline of the
    // unstable cell (#e65100) are on the screen.
    assert!(
        page.pixels_of([0x5c, 0x6b, 0xc0]) > 1000,
        "no histogram bar drawn"
    );
    assert!(
        page.pixels_of([0xe6, 0x51, 0x00]) > 20,
        "no unstable cell marked"
    );
}

#[test]
fn bad_grading_input_is_refused_with_what_to_do() {
    let class = Class::new("[run]\nstart = \"./tcpproxy\"\n[points]\n\"ecoh/\" = 1\n");
    let sub = class.submit("ann", GOOD);
    let twin = class.dir.path().join("other").join("ann");
    std::fs::create_dir_all(&twin).unwrap();
    let grading = class.dir.path().join("grading.toml");
    let good_grading = class.dir.path().join("good.toml");
    std::fs::write(
        &good_grading,
        "[run]\nstart = \"./tcpproxy\"\n[points]\n\"*\" = 1\n",
    )
    .unwrap();
    let cases: [(Vec<PathBuf>, &str); 4] = [
        (vec![grading.clone(), sub.clone()], "matches no case"),
        (
            vec![good_grading.clone(), sub.join("nowhere")],
            "is not a directory",
        ),
        (
            vec![good_grading.clone(), sub.clone(), twin],
            "two submissions are named 'ann'",
        ),
        (
            vec![class.dir.path().join("missing.toml"), sub],
            "cannot read the grading file",
        ),
    ];
    for (args, expected) in cases {
        Command::new(TPROX)
            .arg("grade")
            .args(&args)
            .assert()
            .code(2)
            .stderr(predicates::str::contains(expected))
            .stderr(predicates::str::contains("panicked").not());
    }
}

/// Where the sandbox cannot be made (here: no bwrap on PATH), `auto` grades with a warning in
/// the output and the gradebook, and `namespaces` refuses to grade.
#[test]
fn without_bubblewrap_auto_warns_and_namespaces_refuses() {
    let points =
        "[run]\nstart = \"./tcpproxy\"\nstall_timeout = 2\n[points]\n\"echo/single\" = 1\n";
    let class = Class::new(&format!("{points}[sandbox]\nmode = \"auto\"\n"));
    let sub = class.submit("ann", GOOD);
    let empty = class.out("no-tools");
    std::fs::create_dir_all(&empty).unwrap();
    let graded = class
        .grade_with(
            &[sub.display().to_string()],
            &[("PATH", empty.to_str().unwrap())],
        )
        .success();
    let stderr = String::from_utf8_lossy(&graded.get_output().stderr).into_owned();
    assert!(
        stderr.contains("WARNING: submissions are NOT sandboxed (bwrap not found"),
        "{stderr}"
    );
    let book = gradebook(&class.out("grades"));
    assert!(
        book["sandbox"]
            .as_str()
            .unwrap()
            .starts_with("none: WARNING"),
        "{}",
        book["sandbox"]
    );
    assert_eq!(submission(&book, "ann")["total"].as_f64(), Some(1.0));

    std::fs::write(
        class.out("grading.toml"),
        format!("{points}[sandbox]\nmode = \"namespaces\"\n"),
    )
    .unwrap();
    class
        .grade_with(
            &[sub.display().to_string()],
            &[("PATH", empty.to_str().unwrap())],
        )
        .code(2)
        .stderr(predicates::str::contains(
            "mode = \"namespaces\", but this machine cannot make the sandbox: bwrap not found",
        ));
}

#[test]
fn ctrl_c_during_grading_stops_everything_the_submissions_started() {
    let class = Class::new(&unsandboxed(
        "[run]\nstart = \"./tcpproxy\"\nstall_timeout = 2\n[points]\n\"timeout/\" = 1\n",
    ));
    // Each proxy leaves a daemon behind, out of its process group.
    let sub = class.submit(
        "forker",
        &format!(
            "echo $$ >> \"$PIDS\"\n\
             setsid sleep 3600 </dev/null >/dev/null 2>&1 & echo $! >> \"$PIDS\"\n{GOOD}"
        ),
    );
    let mut child = std::process::Command::new(TPROX)
        .arg("grade")
        .arg(class.dir.path().join("grading.toml"))
        .arg(&sub)
        .current_dir(class.dir.path())
        .env("TPROX_EXE", TPROX)
        .env("PIDS", &class.pids)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Preflight plus two cases: two pids each.
    assert_eq!(
        interrupt_when_started(&mut child, &class.pids, 6),
        Some(130)
    );
    assert_all_gone(&class.pids);
    assert!(!class.out("grades").join("gradebook.json").exists());
}

/// A grading stopped midway (by pid, with SIGTERM, as a batch system's time limit stops a job)
/// keeps the submissions that finished; `--resume` grades only the rest and ends with the
/// gradebook an uninterrupted grading writes. A resumed grading with other settings is refused.
#[test]
fn a_grading_stopped_midway_resumes_to_the_same_gradebook() {
    let class = Class::new(&unsandboxed(
        "[run]\nstart = \"./tcpproxy\"\nstall_timeout = 2\n[points]\n\"echo/single\" = 1\n\
         \"timeout/active\" = 2\n",
    ));
    // Each records its pid, so that nothing can be left running unseen.
    let recorded = format!("echo $$ >> \"$PIDS\"\n{GOOD}");
    let mut subs: Vec<String> = ["ann", "ben", "cat", "dan"]
        .iter()
        .map(|name| class.submit(name, &recorded).display().to_string())
        .collect();
    // One that never starts: its row is recorded like any other.
    subs.push(class.submit("eve", "exit 3").display().to_string());
    let one_at_a_time = ["-j".to_string(), "1".to_string()];
    let mut args = subs.clone();
    args.extend(one_at_a_time.iter().cloned());
    args.extend(["--out".into(), "whole".into()]);
    class.grade(&args).success();

    let rows = |out: &Path| {
        std::fs::read_dir(out.join("journal"))
            .map(|dir| {
                dir.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("row-"))
                    .count()
            })
            .unwrap_or(0)
    };
    let stopped = class.out("stopped");
    let child = std::process::Command::new(TPROX)
        .arg("grade")
        .arg(class.dir.path().join("grading.toml"))
        .args(&subs)
        .args(&one_at_a_time)
        .arg("--out")
        .arg(&stopped)
        .current_dir(class.dir.path())
        .env("TPROX_EXE", TPROX)
        .env("PIDS", &class.pids)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while rows(&stopped) < 2 {
        assert!(Instant::now() < deadline, "no submission finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let ended = child.wait_with_output().unwrap();
    assert!(!ended.status.success());
    let said = String::from_utf8_lossy(&ended.stderr);
    assert!(said.contains("with --resume grades the rest"), "{said}");
    let kept = rows(&stopped);
    assert!((2..5).contains(&kept), "{kept} of 5 rows kept");
    assert!(!stopped.join("gradebook.json").exists());
    assert_all_gone(&class.pids);
    // The rows kept, as they were recorded: a resumed grading takes them as they are.
    let kept_rows: Vec<Value> = std::fs::read_dir(stopped.join("journal"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("row-"))
        .map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap())
        .collect();

    // Other settings cannot resume it, and say which.
    let mut other = subs.clone();
    other.extend(["--out".into(), "stopped".into(), "--resume".into()]);
    other.extend(["--repeat".into(), "2".into()]);
    class
        .grade(&other)
        .code(2)
        .stderr(predicates::str::contains("--repeat changed: 1 then, 2 now"));

    let mut resume = subs.clone();
    resume.extend(one_at_a_time.iter().cloned());
    resume.extend(["--out".into(), "stopped".into(), "--resume".into()]);
    let resumed = class.grade(&resume).success();
    let said = String::from_utf8_lossy(&resumed.get_output().stderr).into_owned();
    assert!(
        said.contains(&format!(
            "resuming: {kept} of 5 submission(s) already graded, {} to go",
            5 - kept
        )),
        "{said}"
    );
    let (whole, resumed) = (gradebook(&class.out("whole")), gradebook(&stopped));
    assert_eq!(grade_rows(&resumed), grade_rows(&whole));
    for row in &kept_rows {
        let name = row["name"].as_str().unwrap();
        assert_eq!(
            submission(&resumed, name)["duration_s"],
            row["duration_s"],
            "{name} was graded again"
        );
    }
    assert_eq!(submission(&resumed, "ann")["total"], 3.0);
    assert_eq!(submission(&resumed, "eve")["status"], "did-not-start");
    assert_exports_match(&stopped, &resumed);
    assert_all_gone(&class.pids);
}
