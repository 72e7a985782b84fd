//! The kernel sandbox around each submission (`[sandbox]` in the grading file): the parent's
//! side, which decides, probes, and starts one outer box per submission.
//!
//! Two boxes, one inside the other, both made by bubblewrap (`bwrap`, Debian's `bubblewrap`):
//!
//! - **The outer box** holds tprox's own grading of one submission (a child `tprox` process,
//!   spoken to through [`super::box_protocol`]): a network namespace with only loopback, so the
//!   proxy, tprox's client and tprox's destination for that submission share one namespace and
//!   the cases run unchanged, while no other submission (each has its own namespace) and
//!   nothing outside the machine is reachable; and the submission's writable space, a tmpfs of
//!   `disk_mib`, mounted over `OUT/.box/NAME`. It keeps the machine's pid namespace: a new one
//!   would need a fresh `/proc`, which bwrap partly covers, and the kernel lets a nested user
//!   namespace mount `/proc` only where one is fully visible (the inner box needs that). What a
//!   dead child leaves is re-parented to the grading tprox (a subreaper) and swept.
//! - **The inner box** holds every process of the submission: its build and each start of its
//!   proxy ([`Jail::command`], which says how it is made): a minimal read-only root, a private
//!   `/tmp`, the box as the only writable place, the class, the output directory and the
//!   grading file's directory covered; its own pid namespace, session keyring and seccomp
//!   filter; a uid of its own when tprox runs as root (61000 + its place in the class, set by
//!   `setpriv` after bwrap made the mounts as root), so that it is not root, cannot read what
//!   only root may, and meets its process limit (RLIMIT_NPROC) alone; otherwise a user
//!   namespace under the teacher's uid. The environment is emptied but for a short list.
//!
//! Around both: the submission's memory and process ceilings ([`super::ceiling`]), made here
//! before its outer box starts and removed after, and its uid's user keyrings, emptied before
//! and after it.
//!
//! Why bubblewrap rather than namespaces set up by tprox itself: it is small, audited, packaged
//! everywhere, and does the fiddly parts right (mount propagation, `/proc` and `/dev` for a new
//! pid namespace, bringing up loopback, dying with its parent); tprox only composes its
//! arguments.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::box_protocol::{read_child, Job, CHILD_ARG};
use super::ceiling::{Ceiling, Mechanism};
use super::config::{Grading, SandboxMode, SandboxSettings};
use super::gradebook::Submission;
use super::submission::{self, Run};
use crate::proxy::jail::{self, Jail};

/// The first of the uids given to submissions when tprox runs as root: one per submission (its
/// place in the class), so that one's process limit is not another's.
const UID_BASE: u32 = 61000;

/// What this machine offers, found by trying it.
#[derive(Debug, Clone)]
pub struct Support {
    /// `bwrap --version`, or why there is none.
    pub bwrap: Result<String, String>,
    pub root: bool,
    /// Whether the boxes could be made here (both, nested), or what failed.
    pub works: Result<(), String>,
    /// How memory and process ceilings are held here.
    pub ceilings: Mechanism,
    /// What the boxes of a grading file showed when tried (its shares, its build's program,
    /// the filter), one line each; empty without a grading file.
    pub checks: Vec<String>,
    /// The grading file's settings, when one was tried.
    grading: Option<(SandboxSettings, u64)>,
}

impl Support {
    /// Tries the outer and the inner box: with `true` inside, or with `grading`, that file's
    /// boxes (its shares, its ceilings, its filter) with checks of what its builds need.
    pub fn probe(grading: Option<&Grading>) -> Support {
        let root = nix::unistd::geteuid().is_root();
        let bwrap = std::process::Command::new("bwrap")
            .arg("--version")
            .output()
            .map_err(|e| format!("bwrap not found ({e}); install the Debian package bubblewrap"))
            .and_then(|out| match out.status.success() {
                true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
                false => Err(format!("bwrap --version failed ({})", out.status)),
            });
        let ceilings = Mechanism::probe();
        let (works, checks) = match &bwrap {
            Err(e) => (Err(e.clone()), Vec::new()),
            Ok(_) => match try_boxes(root, grading, &ceilings) {
                Ok(checks) => (Ok(()), checks),
                Err(e) => (Err(e), Vec::new()),
            },
        };
        Support {
            bwrap,
            root,
            works,
            ceilings,
            checks,
            grading: grading.map(|g| (g.sandbox.clone(), g.memory_mib)),
        }
    }

    /// What `tprox grade --check-sandbox` prints.
    pub fn describe(&self) -> String {
        let mut lines = vec![match &self.bwrap {
            Ok(version) => format!("bubblewrap:        {version}"),
            Err(e) => format!("bubblewrap:        missing: {e}"),
        }];
        lines.push(match &self.works {
            Ok(()) => format!(
                "namespaces:        usable: network (loopback only), pid, mount, ipc, uts{}",
                if self.root { "" } else { ", user" }
            ),
            Err(e) => format!("namespaces:        NOT usable: {e}"),
        });
        lines.push(
            "files:             a minimal root: /usr, /bin, /lib*, a few files of /etc and the \
             grading file's shares, read-only; the box's own /proc, /dev and /tmp; no /run, \
             /var, /home, /root or /sys"
                .into(),
        );
        let io_uring = self.grading.as_ref().is_some_and(|(s, _)| s.io_uring);
        lines.push(format!(
            "system calls:      a seccomp filter denies keyrings, new namespaces, mount, bpf, \
             perf_event_open, kernel modules{}",
            match io_uring {
                true => " (io_uring allowed by [sandbox] io_uring)",
                false => ", io_uring",
            }
        ));
        lines.push(format!(
            "keyrings:          a session keyring of its own for every box{}",
            match self.root {
                true => "; each submission uid's user keyrings emptied before and after it",
                false => "",
            }
        ));
        lines.push(match self.root {
            true => format!(
                "uid:               a uid per submission ({UID_BASE} + its place in the class, \
                 set by setpriv, no capabilities): tprox runs as root"
            ),
            false => "uid:               yours, in a user namespace (run tprox as root for a uid \
                      per submission and process limits)"
                .into(),
        });
        let per_submission = match &self.grading {
            Some((settings, memory_mib)) => format!(
                ": {memory_mib} MiB of memory and {} processes per submission",
                settings.processes
            ),
            None => String::new(),
        };
        lines.push(format!(
            "ceilings:          {}{per_submission}",
            self.ceilings.describe()
        ));
        lines.push(format!(
            "limits:            address space, CPU time, open files by rlimits per process; \
             processes by RLIMIT_NPROC{}; writable space by a tmpfs of [sandbox] disk_mib",
            if self.root {
                ""
            } else {
                " (not enforced under your uid)"
            }
        ));
        for check in &self.checks {
            lines.push(format!("grading file:      {check}"));
        }
        lines.push(match &self.works {
            Ok(()) => "mode = \"auto\":     submissions are sandboxed".into(),
            Err(_) => {
                "mode = \"auto\":     submissions are NOT sandboxed (a warning in the output \
                       and the gradebook); mode = \"namespaces\" refuses to grade"
                    .into()
            }
        });
        lines.join("\n")
    }

    /// Whether every check of the grading file's boxes passed.
    pub fn checks_pass(&self) -> bool {
        !self.checks.iter().any(|c| c.contains("NOT"))
    }
}

/// The checks a grading file's inner box runs (`sh -c`): its shares are readable, its build's
/// program is found, the filter denies a new user namespace, `/run` is not there. Each prints
/// one line; a failed one says NOT.
fn check_script(grading: &Grading) -> String {
    let quote = |p: &Path| {
        shlex::try_quote(&p.to_string_lossy()).map_or_else(|_| "''".into(), |q| q.into_owned())
    };
    let mut script = String::new();
    for share in &grading.sandbox.share {
        let place = quote(share);
        script.push_str(&format!(
            "if [ -r {place} ]; then echo \"share {place}: readable\"; \
             else echo \"share {place}: NOT readable in the box\"; fi\n"
        ));
    }
    let program = grading
        .build
        .as_ref()
        .and_then(|b| shlex::split(&b.command))
        .and_then(|words| words.into_iter().next())
        .filter(|p| !p.contains('/') && !p.contains('='));
    if let Some(program) = program {
        let program = shlex::try_quote(&program).map_or_else(|_| "''".into(), |q| q.into_owned());
        script.push_str(&format!(
            "if found=$(command -v {program}); then echo \"build program {program}: $found\"; \
             else echo \"build program {program}: NOT found in the box (add its directory to \
             [sandbox] share)\"; fi\n"
        ));
    }
    script.push_str(
        "if [ -e /run ]; then echo \"/run: NOT hidden\"; else echo \"/run: not in the box\"; fi\n\
         if command -v unshare >/dev/null; then \
           if unshare -U true 2>/dev/null; then echo \"new user namespace: NOT denied\"; \
           else echo \"new user namespace: denied\"; fi; fi\n",
    );
    script
}

/// Runs the probe in an inner box inside an outer one, made by a child tprox, as grading
/// would: `true`, or the checks of `grading`'s boxes. Returns the checks' lines.
fn try_boxes(
    root: bool,
    grading: Option<&Grading>,
    ceilings: &Mechanism,
) -> Result<Vec<String>, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a scratch directory: {e}"))?;
    let box_dir = dir.path().join("box");
    std::fs::create_dir(&box_dir).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find tprox itself: {e}"))?;
    let mut jail = Jail::new(box_dir.clone(), root.then_some(UID_BASE), 64);
    let mut ceiling = None;
    if let Some(grading) = grading {
        let settings = &grading.sandbox;
        let hide = [grading_dir_of(grading), dir.path().to_path_buf()]
            .into_iter()
            .filter(|p| !settings.share.iter().any(|s| p.starts_with(s)))
            .collect();
        jail = Jail::new(
            box_dir.clone(),
            root.then_some(UID_BASE),
            settings.processes,
        )
        .hiding(hide, Vec::new(), settings.share.clone())
        .with_io_uring(settings.io_uring);
        let name = format!("tprox-{}-check", std::process::id());
        ceiling = Ceiling::make(ceilings, &name, grading.memory_mib, settings.processes)?;
        if let Some(ceiling) = &ceiling {
            jail = jail.in_cgroups(ceiling.procs());
        }
    }
    let job = Job {
        grading: PathBuf::new(),
        name: "probe".into(),
        path: PathBuf::new(),
        out: dir.path().to_path_buf(),
        run: None,
        seed: 0,
        keep_scratch: false,
        probe: Some(grading.map_or_else(|| "true".into(), check_script)),
        jail,
    };
    let out = std::process::Command::new("bwrap")
        .args(outer_args(root, &box_dir, 16))
        .arg("--")
        .arg(exe)
        .arg(CHILD_ARG)
        .arg(serde_json::to_string(&job).expect("a job serializes"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run bwrap: {e}"))?;
    drop(ceiling);
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(crate::terminal::one_line)
            .collect()),
        false => Err(format!(
            "bwrap could not make the boxes ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// The directory of the grading file, hidden from every box.
fn grading_dir_of(grading: &Grading) -> PathBuf {
    grading
        .path
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("/nonexistent"))
}

/// How grading goes on this machine under these settings.
#[derive(Debug, Clone)]
pub enum Decision {
    Sandboxed { bwrap: String },
    Unsandboxed { warning: Option<String> },
}

impl Decision {
    /// Decides from the settings and what the machine offers; `Err` when `namespaces` was asked
    /// for and cannot be had, or when the settings need root.
    pub fn make(settings: &SandboxSettings) -> Result<Decision, String> {
        if settings.mode == SandboxMode::None {
            return Ok(Decision::Unsandboxed { warning: None });
        }
        let support = Support::probe(None);
        if support.root && support.works.is_ok() {
            if let Some(closed) = settings.share.iter().find(|p| !open_to_others(p)) {
                return Err(format!(
                    "[sandbox] share: {} is not readable by the submissions' uids (they are not \
                     root, and it or a directory on its way is closed to other users): move it \
                     somewhere readable, or open it (chmod o+rx)",
                    closed.display()
                ));
            }
        }
        match (&support.works, settings.mode) {
            (Ok(()), _) if settings.build_network && !support.root => Err(
                "[sandbox] build_network = true needs tprox to run as root (the build's box \
                 joins the machine's network namespace); run as root, or build without the \
                 network"
                    .into(),
            ),
            (Ok(()), _) => Ok(Decision::Sandboxed {
                bwrap: support.bwrap.unwrap_or_default(),
            }),
            (Err(e), SandboxMode::Namespaces) => Err(format!(
                "[sandbox] mode = \"namespaces\", but this machine cannot make the sandbox: {e}\n\
                 (tprox grade --check-sandbox says what is missing)"
            )),
            (Err(e), _) => Ok(Decision::Unsandboxed {
                warning: Some(format!(
                    "WARNING: submissions are NOT sandboxed ({e}): a hostile submission can read \
                     and change its classmates' work and reach the network. Install bubblewrap \
                     and allow user namespaces (tprox grade --check-sandbox), or grade inside a \
                     throw-away VM"
                )),
            }),
        }
    }

    /// The gradebook's word on it.
    pub fn label(&self) -> String {
        match self {
            Decision::Sandboxed { bwrap } => format!("namespaces ({bwrap})"),
            Decision::Unsandboxed { warning: None } => "none (mode = \"none\")".into(),
            Decision::Unsandboxed { warning: Some(w) } => format!("none: {w}"),
        }
    }
}

/// Whether any user may read `place`: every directory on the way lets others pass, and it
/// lets others read.
fn open_to_others(place: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mode = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.mode());
    place.ancestors().skip(1).all(|dir| mode(dir) & 0o001 != 0) && mode(place) & 0o004 != 0
}

/// The arguments of the outer box around one submission's grading: its own network and pid
/// namespaces, the rest of the machine as it is, and `box_dir` a tmpfs of `disk_mib`.
fn outer_args(root: bool, box_dir: &Path, disk_mib: u64) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    if !root {
        args.push("--unshare-user".into());
    }
    args.extend(
        [
            "--unshare-net",
            "--die-with-parent",
            "--dev-bind",
            "/",
            "/",
            "--perms",
            "0755",
            "--size",
        ]
        .map(String::from),
    );
    args.push((disk_mib * 1024 * 1024).to_string());
    args.push("--tmpfs".into());
    args.push(box_dir.display().to_string());
    args
}

/// The places that hide a class's submission directories: a directory that holds nothing but
/// submissions (its subdirectories all are; files aside) is hidden whole, which for a class of
/// hundreds is one mount instead of hundreds at every start of a proxy.
pub fn class_places(class: &[PathBuf]) -> Vec<PathBuf> {
    let mut places = Vec::new();
    let parents: std::collections::BTreeSet<&Path> =
        class.iter().filter_map(|p| p.parent()).collect();
    for parent in parents {
        let only_submissions = parent != Path::new("/")
            && std::fs::read_dir(parent).is_ok_and(|entries| {
                entries
                    .flatten()
                    .all(|e| !e.file_type().is_ok_and(|t| t.is_dir()) || class.contains(&e.path()))
            });
        match only_submissions {
            true => places.push(parent.to_path_buf()),
            false => places.extend(class.iter().filter(|p| p.parent() == Some(parent)).cloned()),
        }
    }
    places
}

/// The directories of `PATH` that the boxes do not show: outside the minimal root and the
/// shares, or inside a place hidden from every box (a grading file kept in a home directory
/// hides the toolchains under it, `~/.cargo/bin`). Every build would fail with "not found".
pub fn hidden_tools(path: &std::ffi::OsStr, share: &[PathBuf], hidden: &[PathBuf]) -> Vec<PathBuf> {
    std::env::split_paths(path)
        .filter(|dir| dir.is_dir())
        .filter(|dir| {
            let shown = jail::root_shows(dir) || share.iter().any(|s| dir.starts_with(s));
            !shown || hidden.iter().any(|h| dir.starts_with(h))
        })
        .collect()
}

/// What the parent knows to build each submission's boxes.
#[derive(Debug, Clone)]
pub struct Boxes {
    pub settings: SandboxSettings,
    /// Where every submission of the class (not only this partition's) is: all are hidden
    /// from each ([`class_places`]).
    pub class: Vec<PathBuf>,
    pub grading_dir: PathBuf,
    pub out: PathBuf,
    /// How each submission's memory and process ceilings are held.
    pub ceilings: Mechanism,
}

impl Boxes {
    /// The inner box of the submission at `place` in the class.
    fn jail(&self, name: &str, place: usize, netns: Option<i32>) -> Jail {
        let root = nix::unistd::geteuid().is_root();
        let exe = std::env::current_exe().ok();
        let shared = |p: &Path| self.settings.share.iter().any(|s| p.starts_with(s));
        let hide = self
            .class
            .iter()
            .chain([&self.grading_dir, &self.out])
            .filter(|p| !shared(p))
            .cloned()
            .collect();
        let hide_files = exe.into_iter().filter(|p| !shared(p)).collect();
        let uid = root.then(|| UID_BASE + place as u32);
        Jail::new(self.box_dir(name), uid, self.settings.processes)
            .hiding(hide, hide_files, self.settings.share.clone())
            .with_host_netns(netns)
            .with_io_uring(self.settings.io_uring)
    }

    fn box_dir(&self, name: &str) -> PathBuf {
        self.out.join(".box").join(name)
    }
}

/// Grades one run of one submission in its boxes: starts the child tprox in the outer box,
/// calls `tick` for each case it finished, and returns the row it printed. Never fails:
/// what goes wrong is the row's error.
pub async fn grade_boxed(
    boxes: &Boxes,
    job: Run<'_>,
    tick: &mut (dyn FnMut() + Send),
) -> Submission {
    let name = job.submission.name.clone();
    let box_dir = boxes.box_dir(&name);
    let failed = |error: String| submission::not_graded(job.submission, job.grading, error);
    if let Err(e) = std::fs::create_dir_all(&box_dir) {
        return failed(format!("cannot create {}: {e}", box_dir.display()));
    }
    // The machine's network namespace, for a build allowed the network: a descriptor that
    // stays open across exec into the child.
    let netns = match boxes.settings.build_network {
        true => match std::fs::File::open("/proc/self/ns/net") {
            Ok(file) => Some(file),
            Err(e) => return failed(format!("cannot open this machine's network namespace: {e}")),
        },
        false => None,
    };
    let netns_fd = netns.as_ref().map(|f| f.as_raw_fd());
    let cgroup = format!(
        "tprox-{}-{}-{}",
        std::process::id(),
        job.place,
        job.places.run.unwrap_or(1)
    );
    let ceiling = match Ceiling::make(
        &boxes.ceilings,
        &cgroup,
        job.grading.memory_mib,
        boxes.settings.processes,
    ) {
        Ok(ceiling) => ceiling,
        Err(e) => return failed(format!("cannot set this submission's ceilings: {e}")),
    };
    let mut jail = boxes.jail(&name, job.place, netns_fd);
    if let Some(ceiling) = &ceiling {
        jail = jail.in_cgroups(ceiling.procs());
    }
    let uid = jail.uid();
    if let Some(uid) = uid {
        if let Err(e) = clear_user_keyrings(uid).await {
            return failed(format!("cannot empty the keyrings of uid {uid}: {e}"));
        }
    }
    let spec = Job {
        // The child starts in this process's directory, but an absolute path needs no luck.
        grading: job
            .grading
            .path
            .canonicalize()
            .unwrap_or_else(|_| job.grading.path.clone()),
        name: name.clone(),
        path: job.submission.path.clone(),
        out: boxes.out.clone(),
        run: job.places.run,
        seed: job.grading.seed,
        keep_scratch: job.places.keep_scratch,
        probe: None,
        jail,
    };
    let mut child = match spawn_outer(&spec, &box_dir, boxes.settings.disk_mib, netns_fd) {
        Ok(child) => child,
        Err(e) => return failed(format!("cannot start bwrap for the sandbox: {e}")),
    };
    drop(netns);
    let pgid =
        nix::unistd::Pid::from_raw(child.id().expect("a just-spawned child has a pid") as i32);
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let errors = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut text = Vec::new();
        let _ = stderr.take(64 * 1024).read_to_end(&mut text).await;
        String::from_utf8_lossy(&text).into_owned()
    });
    let backstop = job.grading.time_limit
        + job
            .grading
            .build
            .as_ref()
            .map_or(Duration::ZERO, |b| b.timeout)
        + Duration::from_secs(120);
    let deadline = Instant::now() + backstop;
    let read = tokio::time::timeout_at(deadline.into(), read_child(stdout, tick)).await;
    let (row, timed_out) = match read {
        Ok(row) => (row, false),
        Err(_) => (None, true),
    };
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    let status = child.wait().await;
    crate::proxy::unregister(pgid);
    let _ = std::fs::remove_dir(&box_dir);
    let _ = std::fs::remove_dir(box_dir.parent().expect("under .box"));
    let errors = errors.await.unwrap_or_default();
    if let Some(uid) = uid {
        // Nothing of this submission's is left for the next one at the same place.
        let _ = clear_user_keyrings(uid).await;
    }
    let reached = ceiling.as_ref().map(Ceiling::reached).unwrap_or_default();
    drop(ceiling);
    let mut row = match row {
        Some(row) => row,
        None if timed_out => failed(format!(
            "grading this submission took longer than {} and was stopped",
            humantime::format_duration(backstop)
        )),
        None => failed(format!(
            "tprox's grading of this submission in its sandbox ended without a result ({}){}",
            status.map_or_else(|e| e.to_string(), |s| s.to_string()),
            match errors.trim() {
                "" => String::new(),
                text => format!(": {text}"),
            }
        )),
    };
    row.limits.extend(reached);
    row.limits.sort();
    row.limits.dedup();
    row
}

/// `keyctl(KEYCTL_CLEAR, KEY_SPEC_USER_KEYRING)` and the same for the user session keyring.
const KEYCTL_CLEAR: libc::c_long = 7;
const KEY_SPEC_USER_KEYRING: libc::c_long = -4;
const KEY_SPEC_USER_SESSION_KEYRING: libc::c_long = -5;

/// Empties the user keyrings of `uid`: a uid's keyrings outlive its processes, and the next
/// submission at the same place gets the same uid. Only that uid may clear them, so a
/// short-lived `true` becomes it and clears them before it runs.
async fn clear_user_keyrings(uid: u32) -> std::io::Result<()> {
    let mut cmd = tokio::process::Command::new("true");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec: system calls only, on plain values.
    unsafe {
        cmd.pre_exec(move || {
            let check = |rc: libc::c_long| match rc {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            };
            check(libc::setgroups(0, std::ptr::null()) as libc::c_long)?;
            check(libc::setresgid(uid, uid, uid) as libc::c_long)?;
            check(libc::setresuid(uid, uid, uid) as libc::c_long)?;
            for keyring in [KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING] {
                check(libc::syscall(libc::SYS_keyctl, KEYCTL_CLEAR, keyring))?;
            }
            Ok(())
        });
    }
    // A group of its own, registered like a box: the orphan sweep that follows every other
    // submission's end kills each child of tprox it does not know, and once killed this one.
    cmd.process_group(0);
    let mut child = crate::proxy::spawn_group(&mut cmd)?;
    let pgid =
        nix::unistd::Pid::from_raw(child.id().expect("a just-spawned child has a pid") as i32);
    let status = child.wait().await;
    crate::proxy::unregister(pgid);
    let status = status?;
    match status.success() {
        true => Ok(()),
        false => Err(std::io::Error::other(format!(
            "true as uid {uid}: {status}"
        ))),
    }
}

/// Starts the outer box with the child tprox in it, leading a session of its own (so nothing
/// in the box has a controlling terminal) and registered as a process group for Ctrl-C.
fn spawn_outer(
    job: &Job,
    box_dir: &Path,
    disk_mib: u64,
    netns_fd: Option<i32>,
) -> std::io::Result<tokio::process::Child> {
    let root = nix::unistd::geteuid().is_root();
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new("bwrap");
    cmd.args(outer_args(root, box_dir, disk_mib))
        .arg("--")
        .arg(&exe)
        .arg(CHILD_ARG)
        .arg(serde_json::to_string(job).expect("a job serializes"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: between fork and exec: clears close-on-exec on a descriptor this process owns
    // and starts a session, system calls only.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = netns_fd {
                libc::fcntl(fd, libc::F_SETFD, 0);
            }
            // A session keyring of its own: the grader's keys stay behind.
            if libc::syscall(libc::SYS_keyctl, 1 as libc::c_long, std::ptr::null::<u8>()) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            match libc::setsid() {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            }
        });
    }
    crate::proxy::spawn_group(&mut cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_on_path_that_the_boxes_do_not_show_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let [shared, course, other] = ["shared", "course", "other"].map(|d| dir.path().join(d));
        let inside = course.join(".cargo/bin");
        for d in [&shared, &inside, &other] {
            std::fs::create_dir_all(d).unwrap();
        }
        let path = std::env::join_paths([
            Path::new("/usr/bin"),
            &shared,
            &inside,
            &other,
            Path::new("/no/such/dir"),
        ])
        .unwrap();
        // Shared, but inside a place hidden from every box (the grading file's directory).
        let share = [shared.clone(), course.clone()];
        assert_eq!(hidden_tools(&path, &share, &[course]), [inside, other]);
    }

    #[test]
    fn a_directory_of_submissions_only_is_hidden_whole() {
        let dir = tempfile::tempdir().unwrap();
        let subs = dir.path().join("subs");
        let mixed = dir.path().join("home");
        let mut class = Vec::new();
        for name in ["ann", "ben"] {
            std::fs::create_dir_all(subs.join(name)).unwrap();
            class.push(subs.join(name));
        }
        std::fs::write(subs.join("README"), "a file beside them does not count").unwrap();
        std::fs::create_dir_all(mixed.join("cat")).unwrap();
        std::fs::create_dir_all(mixed.join(".cargo")).unwrap();
        class.push(mixed.join("cat"));
        let places = class_places(&class);
        assert_eq!(places.len(), 2, "{places:?}");
        assert!(places.contains(&subs), "{places:?}");
        assert!(places.contains(&mixed.join("cat")), "{places:?}");
    }
}
