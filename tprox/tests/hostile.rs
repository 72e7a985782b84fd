//! `tprox grade`'s sandbox against a hostile class (`fixtures/grading/hostile`): two honest
//! submissions and attackers in two waves (classmates, tprox and the machine; then what the
//! boxes share with the machine), each wave graded together in one run. Every attack must fail
//! or stay inside its box, each attacker is graded on what its proxy does, the honest grades
//! are what they are without the attackers, nothing is left running, and the machine is
//! unchanged outside the output directory.
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
        self.grade_and_output(names, out, None).0
    }

    /// Grades as [`Class::grade`] does; with `key`, a key in tprox's session keyring (a login
    /// session holds one) with that payload. Also returns what tprox printed.
    fn grade_and_output(&self, names: &[&str], out: &str, key: Option<&str>) -> (Value, String) {
        let out = self.dir.path().join(out);
        let mut cmd = std::process::Command::new(TPROX);
        cmd.arg("grade")
            .arg(self.dir.path().join("class/grading.toml"))
            .args(names.iter().map(|name| self.submission(name)))
            .arg("--out")
            .arg(&out)
            .args(["-j", "3"])
            .env_remove("TPROX_PARTITION")
            .env(TAG, &self.token);
        if let Some(key) = key {
            hold_key(&mut cmd, key);
        }
        let output = Command::from_std(cmd)
            .timeout(Duration::from_secs(400))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "grading failed ({}):\n{stderr}",
            output.status
        );
        let book =
            serde_json::from_str(&std::fs::read_to_string(out.join("gradebook.json")).unwrap())
                .unwrap();
        (book, stderr)
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

/// Starts `cmd` with a session keyring of its own (the test's is left alone) holding a user
/// key whose payload is `secret`.
fn hold_key(cmd: &mut std::process::Command, secret: &str) {
    let payload = std::ffi::CString::new(secret).unwrap();
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec: system calls on values made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            // A session keyring of tprox's own (this test's is left alone), and the key.
            if libc::syscall(libc::SYS_keyctl, 1 as libc::c_long, std::ptr::null::<u8>()) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let added = libc::syscall(
                libc::SYS_add_key,
                c"user".as_ptr(),
                c"tprox-test-secret".as_ptr(),
                payload.as_ptr(),
                payload.as_bytes().len(),
                -3 as libc::c_long,
            );
            match added {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            }
        });
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

/// The honest submissions earn full marks, case by case what they earn graded alone.
fn assert_honest_grades_unchanged(book: &Value, alone: &Value) {
    let max = book["max_total"].as_f64().unwrap();
    for name in HONEST {
        let (cases, total) = verdicts(row(book, name));
        assert_eq!(
            (cases, total),
            verdicts(row(alone, name)),
            "{name}'s grade changed with the attackers in the class"
        );
        assert_eq!(total, max, "{name}: {:#}", row(book, name));
    }
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

    assert_honest_grades_unchanged(&book, &alone);

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

/// The second wave: attackers that reach for what the boxes share with the machine rather than
/// for their classmates. Graded as root, as CI runners and shared grading servers grade, with
/// what each attack aims at set up by the test: a key in the grading process's session
/// keyring, sockets that are files under /run and /var/tmp, a file only root may read (swapped
/// in as a link during the copy, and handed in as a hard link), a memory ceiling below what the
/// swarm asks for, and submission names made for spreadsheets and terminals.
const SECOND_WAVE: [&str; 5] = ["keyring", "sockets", "swapper", "linker", "swarm"];

/// Submission names that are attacks: a spreadsheet formula, and a forged progress line.
const NAMED: [&str; 2] = [
    "=HYPERLINK(\"x\",\"y\")",
    "mallory\r\x1b[2K[3 of 3] alice: 9 of 9 points\x1b]0;owned\x07",
];

/// A unix socket the test listens on, removed when dropped.
struct Socket {
    path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl Socket {
    fn new(path: PathBuf) -> Socket {
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        use std::os::unix::fs::PermissionsExt;
        // Open to every uid: only the sandbox stands between a submission and it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        Socket { path, listener }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The keys in `uid`'s user keyring, read as that uid.
fn user_keys(uid: u32) -> String {
    let script = "import ctypes, platform\n\
                  libc = ctypes.CDLL(None)\n\
                  keyctl = {'x86_64': 250, 'aarch64': 219}[platform.machine()]\n\
                  buf = ctypes.create_string_buffer(4096)\n\
                  n = libc.syscall(keyctl, 11, ctypes.c_long(-4), buf, ctypes.c_long(4096))\n\
                  print(max(n, 0) // 4)\n";
    let out = std::process::Command::new("setpriv")
        .args(["--reuid", &uid.to_string(), "--regid", &uid.to_string()])
        .args(["--clear-groups", "--", "python3", "-c", script])
        // The system's python3, which any uid may run (not a toolchain manager's shim).
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_second_wave_reaching_for_the_machine_is_contained() {
    tprox_suite::require("bwrap", "bubblewrap");
    tprox_suite::require("python3", "python3");
    tprox_suite::require("setpriv", "util-linux");
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test grades as root, as CI runners and shared grading servers do: run it as \
         root (ci/test does)"
    );
    let _alone = one_at_a_time();
    let class = Class::new();
    let dir = class.dir.path();
    let grading = dir.join("class/grading.toml");
    let text = std::fs::read_to_string(&grading).unwrap();
    std::fs::write(
        &grading,
        text.replace("[limits]\n", "[limits]\nmemory_mib = 256\n"),
    )
    .unwrap();

    // A file only root may read, on the class's file system.
    let root_secret = format!("ROOTSECRET-{}", class.token);
    let secret = dir.join("root-only.txt");
    std::fs::write(&secret, &root_secret).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    // linker's student owns their directory and hands in a hard link to it.
    let linker = class.submission("linker");
    std::fs::hard_link(&secret, linker.join("linked.txt")).unwrap();
    for place in [linker.clone(), linker.join("build.sh")] {
        std::os::unix::fs::lchown(&place, Some(61999), Some(61999)).unwrap();
    }
    // swapper's files, swapped for links to it while the class is graded.
    let swapper = class.submission("swapper");
    let names: Vec<PathBuf> = (0..100).map(|i| swapper.join(format!("f{i:02}"))).collect();
    for name in &names {
        std::fs::write(name, "plain\n").unwrap();
    }
    // Sockets of the machine, under /run and /var/tmp.
    let mut sockets = vec![Socket::new(
        PathBuf::from("/var/tmp").join(format!("tprox-test-{}.sock", class.token)),
    )];
    if Path::new("/run").is_dir() {
        sockets.push(Socket::new(
            PathBuf::from("/run").join(format!("tprox-test-{}.sock", class.token)),
        ));
    }
    let listed: Vec<String> = sockets
        .iter()
        .map(|s| s.path.display().to_string())
        .collect();
    class.write("sockets", "sockets.txt", &listed.join("\n"));
    // Names made for spreadsheets and terminals: honest submissions under them.
    for name in NAMED {
        copy_tree(&class.submission("honest-a"), &class.submission(name));
    }

    let alone = class.grade(&HONEST, "alone");
    let before: BTreeMap<PathBuf, Vec<u8>> = class
        .snapshot()
        .into_iter()
        .filter(|(path, _)| !path.starts_with(&swapper))
        .collect();

    // The swapping, for as long as the grading lasts.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapping = {
        let (stop, names, secret) = (stop.clone(), names.clone(), secret.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for name in &names {
                    let link = name.with_extension("link");
                    let plain = name.with_extension("plain");
                    let _ = std::os::unix::fs::symlink(&secret, &link);
                    let _ = std::fs::rename(&link, name);
                    let _ = std::fs::write(&plain, "plain\n");
                    let _ = std::fs::rename(&plain, name);
                    swaps += 2;
                }
            }
            swaps
        })
    };
    let key_secret = format!("KEYSECRET-{}", class.token);
    let all: Vec<&str> = HONEST
        .iter()
        .chain(&SECOND_WAVE)
        .chain(&NAMED)
        .copied()
        .collect();
    let (book, stderr) = class.grade_and_output(&all, "grades", Some(&key_secret));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapping.join().unwrap();
    let out = dir.join("grades");
    let max = book["max_total"].as_f64().unwrap();

    assert_honest_grades_unchanged(&book, &alone);
    for name in NAMED
        .iter()
        .chain(&["sockets", "swapper", "linker", "swarm"])
    {
        let row = row(&book, name);
        assert_eq!(
            row["total"].as_f64(),
            Some(max),
            "{name:?}: {row:#}\n{}",
            log(&out, name)
        );
    }

    // Each attack that got through is one line here; all are shown at once.
    let mut escapes: Vec<String> = Vec::new();
    let mut contained = |held: bool, escape: String| {
        if !held {
            escapes.push(escape);
        }
    };

    // 1. keyring read no key of the grader's and left none for the next student.
    let keyring = log(&out, "keyring");
    assert!(
        keyring.contains("session keyring"),
        "keyring did not run:\n{keyring}"
    );
    let feedback = std::fs::read_to_string(out.join("feedback/keyring.md")).unwrap();
    let results = std::fs::read_to_string(out.join("gradescope/keyring/results.json")).unwrap();
    for (what, text) in [
        ("build log", &keyring),
        ("feedback", &feedback),
        ("results", &results),
    ] {
        contained(
            !text.contains(&key_secret),
            format!("keyring: the grader's key is in its {what}"),
        );
    }
    contained(
        !keyring.contains(": planted"),
        format!("keyring planted a key:\n{keyring}"),
    );
    for uid in 61000..61000 + all.len() as u32 {
        let keys = user_keys(uid);
        contained(
            keys == "0",
            format!("keyring: {keys} key(s) left in uid {uid}'s user keyring"),
        );
    }

    // 2. sockets reached neither socket, from its build or from its proxy.
    for socket in &sockets {
        let reached =
            !matches!(socket.listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock);
        contained(
            !reached,
            format!(
                "sockets reached {}:\n{}",
                socket.path.display(),
                log(&out, "sockets")
            ),
        );
    }

    // 3 and 4. Neither the swapped links nor the hard link put root's file in a box.
    assert!(swaps > 1000, "the test swapped only {swaps} times");
    for name in ["swapper", "linker"] {
        let text = log(&out, name);
        contained(
            !text.contains(&root_secret),
            format!("{name} read root's file:\n{text}"),
        );
    }
    let linker_row = limits(row(&book, "linker"));
    contained(
        linker_row.contains("linked.txt not copied: a hard link"),
        format!("linker's row does not say its hard link was refused: {linker_row:?}"),
    );

    // 5. swarm's processes together stopped at the ceiling.
    let swarm = limits(row(&book, "swarm"));
    let peak: Option<u64> = swarm
        .split("used at most ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok());
    contained(
        swarm.contains("memory ceiling reached") && peak.is_some_and(|p| p <= 256),
        format!(
            "swarm's memory was not stopped at the ceiling of 256 MiB: {swarm:?}\n{}",
            log(&out, "swarm")
        ),
    );

    // 6. Names: text in the CSVs, escaped on the terminal and in the page.
    for file in ["gradebook.csv", "lms.csv"] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let cells: Vec<String> = reader
            .records()
            .map(|r| r.unwrap()[0].to_string())
            .collect();
        contained(
            cells.contains(&format!("'{}", NAMED[0])) && !cells.iter().any(|c| c.starts_with('=')),
            format!("{file} holds a formula: {cells:?}"),
        );
    }
    contained(
        !stderr.contains('\x1b') && !stderr.contains('\r') && stderr.contains("mallory\\r\\x1b[2K"),
        format!("control characters reached the terminal: {stderr:?}"),
    );
    let page = std::fs::read_to_string(out.join("gradebook.html")).unwrap();
    contained(
        page.contains("=HYPERLINK(&quot;x&quot;") && !page.contains("HYPERLINK(\"x\""),
        "the page shows a name unescaped".into(),
    );
    assert!(escapes.is_empty(), "got through:\n{}", escapes.join("\n"));

    // The class's files are what they were (swapper's are the test's own doing).
    let after: BTreeMap<PathBuf, Vec<u8>> = class
        .snapshot()
        .into_iter()
        .filter(|(path, _)| !path.starts_with(&swapper))
        .collect();
    assert_eq!(after, before, "the class's files changed");
    let left = leftovers(&class);
    assert!(left.is_empty(), "left running: {left:#?}");
}

/// `--check-sandbox GRADING_FILE` tries that file's boxes: its shares are readable there, its
/// build's program is found, /run is not there and the filter denies a new user namespace; a
/// build program the boxes do not have is named, and the check fails.
#[test]
fn checking_the_sandbox_tries_the_grading_files_boxes() {
    tprox_suite::require("bwrap", "bubblewrap");
    let _alone = one_at_a_time();
    let class = Class::new();
    let grading = class.dir.path().join("class/grading.toml");
    let check = |file: &Path| {
        let out = std::process::Command::new(TPROX)
            .args(["grade", "--check-sandbox"])
            .arg(file)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = check(&grading);
    assert_eq!(code, Some(0), "{text}");
    for line in [
        format!("grading file:      share {TPROX}: readable"),
        "grading file:      build program sh: /".into(),
        "grading file:      /run: not in the box".into(),
        "grading file:      new user namespace: denied".into(),
        "300 processes per submission".into(),
    ] {
        assert!(text.contains(&line), "no {line:?} in:\n{text}");
    }
    if nix::unistd::geteuid().is_root() {
        assert!(text.contains("ceilings:          cgroup v"), "{text}");
    }
    let text = std::fs::read_to_string(&grading).unwrap();
    let elsewhere = class.dir.path().join("class/elsewhere.toml");
    std::fs::write(
        &elsewhere,
        text.replace("sh build.sh", "tprox-no-such-compiler build.sh"),
    )
    .unwrap();
    let (code, text) = check(&elsewhere);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("build program tprox-no-such-compiler: NOT found in the box"),
        "{text}"
    );
}
