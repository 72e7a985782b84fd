//! `tprox grade`'s sandbox against a hostile class (`fixtures/grading/hostile`): two honest
//! submissions and seven that attack their classmates, tprox and the machine, graded together
//! in one run. Every attack must fail or stay inside its box, each attacker is graded on what
//! its proxy does, the honest grades are what they are without the attackers, nothing is left
//! running, and the machine is unchanged outside the output directory.
//!
//! The class is graded in a copy, so that an attack that got through would damage the copy,
//! never the repository. The grading file asks for `mode = "namespaces"`: where the machine
//! cannot make the sandbox, tprox refuses to grade, so the attacks never run unsandboxed.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

const TPROX: &str = env!("CARGO_BIN_EXE_tprox");

/// The honest submissions and the attackers.
const HONEST: [&str; 2] = ["honest-a", "honest-b"];
const ATTACKERS: [&str; 7] = [
    "snoop", "vandal", "killer", "netcat", "hog", "sleeper", "daemon",
];

/// One test at a time: each grades several submissions at once, and the machine may have two
/// cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The marker in the command line of the daemon's leftovers.
const DAEMON_MARKER: &str = "tprox-daemon-marker";

/// The hostile class, copied into a temporary directory, with what its attacks aim at: secrets
/// in the honest submissions, a decoy process of the machine, a listening port outside the
/// submissions' namespaces.
struct Class {
    dir: tempfile::TempDir,
    token: String,
    decoy: std::process::Child,
    listener: TcpListener,
}

impl Class {
    fn new() -> Class {
        let dir = tempfile::tempdir().unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/grading/hostile");
        copy_tree(&source, &dir.path().join("class"));
        let grading = dir.path().join("class/grading.toml");
        let text = std::fs::read_to_string(&grading).unwrap();
        std::fs::write(&grading, text.replace("@TPROX@", TPROX)).unwrap();
        static CLASSES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let count = CLASSES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let token = format!("{:x}-{count}", std::process::id());
        let decoy = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let class = Class {
            dir,
            token,
            decoy,
            listener,
        };
        for name in HONEST {
            class.write(
                name,
                "secret.txt",
                &format!("SECRET-{}-{name}", class.token),
            );
        }
        class.write("vandal", "token.txt", &class.token);
        class.write("killer", "decoy.pid", &class.decoy.id().to_string());
        let port = class.listener.local_addr().unwrap().port();
        class.write("netcat", "port.txt", &port.to_string());
        class
    }

    fn submission(&self, name: &str) -> PathBuf {
        self.dir.path().join("class/submissions").join(name)
    }

    fn write(&self, name: &str, file: &str, text: &str) {
        std::fs::write(self.submission(name).join(file), text).unwrap();
    }

    /// Grades these submissions into `out` (under the temporary directory) and returns the
    /// gradebook.
    fn grade(&self, names: &[&str], out: &str) -> Value {
        let out = self.dir.path().join(out);
        let mut cmd = Command::new(TPROX);
        cmd.arg("grade")
            .arg(self.dir.path().join("class/grading.toml"))
            .args(names.iter().map(|name| self.submission(name)))
            .arg("--out")
            .arg(&out)
            .args(["-j", "3"])
            .env_remove("TPROX_PARTITION")
            .env(TAG, &self.token)
            .timeout(Duration::from_secs(400));
        let assert = cmd.assert();
        let output = assert.get_output();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "grading failed ({}):\n{stderr}",
            output.status
        );
        serde_json::from_str(&std::fs::read_to_string(out.join("gradebook.json")).unwrap()).unwrap()
    }

    /// Every file of the class (the grading file and the submissions) with its content.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        snapshot(&self.dir.path().join("class"), &mut files);
        files
    }
}

impl Drop for Class {
    fn drop(&mut self) {
        let _ = self.decoy.kill();
        let _ = self.decoy.wait();
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn snapshot(dir: &Path, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            snapshot(&entry.path(), files);
        } else {
            files.insert(entry.path(), std::fs::read(entry.path()).unwrap());
        }
    }
}

fn row<'a>(book: &'a Value, name: &str) -> &'a Value {
    book["submissions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no row for {name}"))
}

/// Each case's outcome, and the total.
fn verdicts(row: &Value) -> (Vec<(String, String)>, f64) {
    let cases = row["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["case"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (cases, row["total"].as_f64().unwrap())
}

fn limits(row: &Value) -> String {
    row["limits"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|v| v.as_str().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

fn log(book_dir: &Path, name: &str) -> String {
    std::fs::read_to_string(book_dir.join("logs").join(name).join("build.log")).unwrap_or_default()
}

/// The variable that marks every process of one test's grading: tprox passes `TPROX_*`
/// variables into the sandbox, so the builds, the proxies and what they leave carry it, and
/// another grading on the machine (with its own uids in the same range) is not mistaken for
/// this one's.
const TAG: &str = "TPROX_TEST_CLASS";

/// This class's processes still running (their environment holds the class's tag), shown
/// with their uid and command line.
fn leftovers(class: &Class) -> Vec<String> {
    let tag = format!("{TAG}={}", class.token);
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let read = |file: &str| {
            let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default();
            String::from_utf8_lossy(&bytes).replace('\0', " ")
        };
        let (cmdline, environ, status) = (read("cmdline"), read("environ"), read("status"));
        let zombie = status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'));
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("?")
            .to_string();
        let ours = environ.split(' ').any(|v| v == tag);
        if !zombie && ours {
            found.push(format!("{pid} (uid {uid}): {cmdline}"));
        }
    }
    found
}

#[test]
fn a_hostile_class_is_contained_and_the_honest_grades_do_not_change() {
    tprox_suite::require("bwrap", "bubblewrap");
    let check = std::process::Command::new(TPROX)
        .args(["grade", "--check-sandbox"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "this test needs the grading sandbox (bubblewrap and user namespaces; ci/test installs \
         bubblewrap):\n{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let _alone = one_at_a_time();
    let class = Class::new();
    let before = class.snapshot();

    // The honest submissions alone, then the whole class together.
    let alone = class.grade(&HONEST, "alone");
    let all: Vec<&str> = HONEST.iter().chain(&ATTACKERS).copied().collect();
    let book = class.grade(&all, "grades");
    let out = class.dir.path().join("grades");
    assert!(
        book["sandbox"].as_str().unwrap().starts_with("namespaces"),
        "{}",
        book["sandbox"]
    );
    let max = book["max_total"].as_f64().unwrap();

    for name in HONEST {
        let (cases, total) = verdicts(row(&book, name));
        assert_eq!(
            (cases, total),
            verdicts(row(&alone, name)),
            "{name}'s grade changed with the attackers in the class"
        );
        assert_eq!(total, max, "{name}: {:#}", row(&book, name));
    }

    // Each attacker that handed in a correct proxy is graded on it: full marks.
    for name in ["snoop", "vandal", "killer", "netcat", "hog", "daemon"] {
        let row = row(&book, name);
        assert_eq!(
            row["total"].as_f64(),
            Some(max),
            "{name} handed in a correct proxy: {row:#}\nbuild log:\n{}",
            log(&out, name)
        );
    }

    // snoop read nothing of its classmates'.
    let snooped = log(&out, "snoop");
    assert!(
        !snooped.contains("SECRET-"),
        "snoop read a secret:\n{snooped}"
    );

    // vandal changed nothing outside its box: not the class, not the gradebook or the logs,
    // not /tmp, not the directory around the class.
    assert_eq!(class.snapshot(), before, "the class's files changed");
    let tmp_file = PathBuf::from(format!("/tmp/tprox-vandal-{}", class.token));
    assert!(!tmp_file.exists(), "vandal wrote {}", tmp_file.display());
    let mut around: Vec<String> = std::fs::read_dir(class.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    around.sort();
    assert_eq!(
        around,
        ["alone", "class", "grades"],
        "vandal wrote beside the class"
    );
    for name in HONEST.iter().chain(&ATTACKERS) {
        let text = log(&out, name);
        assert!(
            !text.starts_with("vandalized"),
            "{name}'s build log was overwritten"
        );
    }
    assert!(!out.join("vandal-was-here").exists());
    assert!(
        !out.join(".box").exists(),
        "the boxes' mount points were left"
    );

    // killer: the decoy lives, tprox finished (it wrote the gradebook above).
    let decoy_alive = std::fs::read_to_string(format!("/proc/{}/stat", class.decoy.id()))
        .is_ok_and(|stat| !stat.contains(") Z"));
    assert!(decoy_alive, "killer killed the decoy process by its pid");

    // netcat: no route out, and the port outside its namespace was never reached.
    let netcat = log(&out, "netcat");
    assert!(
        netcat.contains("routes out of the machine: 0"),
        "netcat saw a route out:\n{netcat}"
    );
    match class.listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("netcat reached a port outside its namespace: {other:?}\n{netcat}"),
    }

    // hog met its limits, and its row says which.
    let hog = limits(row(&book, "hog"));
    for limit in ["processes", "memory", "writable space", "output"] {
        assert!(
            hog.contains(limit),
            "hog's row names no {limit} limit: {hog:?}\nbuild log:\n{}",
            log(&out, "hog")
        );
    }

    // The gradebook page and hog's feedback page say so too.
    let page = std::fs::read_to_string(out.join("gradebook.html")).unwrap();
    assert!(page.contains("limits reached: ") && page.contains("sandbox: namespaces"));
    let feedback = std::fs::read_to_string(out.join("feedback/hog.md")).unwrap();
    assert!(feedback.contains("Limits reached: "), "{feedback}");

    // sleeper's build was stopped at its timeout.
    let sleeper = row(&book, "sleeper");
    assert_eq!(sleeper["status"], "build-failed", "{sleeper:#}");
    assert!(limits(sleeper).contains("build time"), "{sleeper:#}");

    // Nothing is left running: not the daemon's leftovers, nothing the class started.
    let left = leftovers(&class);
    assert!(left.is_empty(), "left running: {left:#?}");
}

/// `--repeat` and `--keep-scratch` in the sandbox: each run in a fresh box, every run's logs,
/// and the kept scratch copy is the box's content, copied out.
#[test]
fn repeated_runs_each_get_a_fresh_box_and_the_scratch_copy_is_kept() {
    let _alone = one_at_a_time();
    let class = Class::new();
    let out = class.dir.path().join("grades");
    Command::new(TPROX)
        .arg("grade")
        .arg(class.dir.path().join("class/grading.toml"))
        .arg(class.submission("honest-a"))
        .args(["--repeat", "2", "--keep-scratch", "--out"])
        .arg(&out)
        .env_remove("TPROX_PARTITION")
        .timeout(Duration::from_secs(200))
        .assert()
        .success();
    let book: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("gradebook.json")).unwrap())
            .unwrap();
    let row = row(&book, "honest-a");
    let max = book["max_total"].as_f64().unwrap();
    assert_eq!(row["run_totals"], serde_json::json!([max, max]), "{row:#}");
    assert!(out.join("logs/honest-a/run-2/build.log").exists());
    let kept = out.join("scratch/honest-a");
    assert!(kept.join("tcpproxy").exists() && kept.join("secret.txt").exists());
    assert!(
        !out.join(".box").exists(),
        "the boxes' mount points were left"
    );
}

/// Ctrl-C while sandboxed submissions run: tprox stops, and nothing they started is left,
/// neither their processes nor the daemons they left nor the boxes' mount points.
#[test]
fn ctrl_c_in_the_sandbox_leaves_nothing_running() {
    let _alone = one_at_a_time();
    let class = Class::new();
    let out = class.dir.path().join("grades");
    let mut child = std::process::Command::new(TPROX)
        .arg("grade")
        .arg(class.dir.path().join("class/grading.toml"))
        .arg(class.submission("daemon"))
        .arg(class.submission("sleeper"))
        .arg("--out")
        .arg(&out)
        .env_remove("TPROX_PARTITION")
        .env(TAG, &class.token)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Interrupt once the daemon's leftover runs (its build left one) and sleeper sleeps.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let started = |needle: &str| leftovers(&class).iter().any(|p| p.contains(needle));
    while !(started(DAEMON_MARKER) && started("sleep 100000")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemons never started"
        );
        assert!(child.try_wait().unwrap().is_none(), "tprox ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = leftovers(&class);
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left running after Ctrl-C: {left:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !out.join(".box").exists(),
        "the boxes' mount points were left"
    );
    assert!(!out.join("gradebook.json").exists());
}

/// `build_network = true`: the build (only the build) reaches the machine's network: here
/// the port the test holds on the machine's loopback, which the sandboxed build of the class
/// test cannot reach.
#[test]
fn a_build_allowed_the_network_reaches_the_machines_loopback() {
    let _alone = one_at_a_time();
    let class = Class::new();
    let grading = class.dir.path().join("class/grading.toml");
    let text = std::fs::read_to_string(&grading).unwrap();
    std::fs::write(
        &grading,
        text.replace("[sandbox]\n", "[sandbox]\nbuild_network = true\n"),
    )
    .unwrap();
    let book = class.grade(&["netcat"], "grades");
    let log = log(&class.dir.path().join("grades"), "netcat");
    // Grading is over: a connection the build made waits in the listener's backlog.
    let (_, from) = class
        .listener
        .accept()
        .unwrap_or_else(|e| panic!("the build did not reach the port ({e}):\n{log}"));
    assert!(from.ip().is_loopback(), "{log}");
    assert_eq!(row(&book, "netcat")["total"], book["max_total"]);
}

/// A shared place closed to other users: as root, tprox refuses to grade (the submissions'
/// uids could not read it, and every build would fail the same puzzling way); as anyone else
/// the box runs under that user, who can read it, and grading goes on.
#[test]
fn a_share_closed_to_the_submissions_is_refused_up_front() {
    let _alone = one_at_a_time();
    let class = Class::new();
    let closed = class.dir.path().join("closed");
    std::fs::create_dir_all(closed.join("tools")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    let grading = class.dir.path().join("class/grading.toml");
    let text = std::fs::read_to_string(&grading).unwrap();
    let share = format!(
        "share = [\"{TPROX}\", \"{}\"]",
        closed.join("tools").display()
    );
    std::fs::write(
        &grading,
        text.replace(&format!("share = [\"{TPROX}\"]"), &share),
    )
    .unwrap();
    let assert = Command::new(TPROX)
        .arg("grade")
        .arg(&grading)
        .arg(class.submission("honest-a"))
        .arg("--out")
        .arg(class.dir.path().join("grades"))
        .env_remove("TPROX_PARTITION")
        .timeout(Duration::from_secs(200))
        .assert();
    if nix::unistd::geteuid().is_root() {
        assert.code(2).stderr(predicates::str::contains(
            "is not readable by the submissions' uids",
        ));
    } else {
        assert.success();
    }
}
