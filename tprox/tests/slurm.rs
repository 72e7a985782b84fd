//! The Slurm path of `tprox grade`, run for real: munged, slurmctld and slurmd from Debian's
//! packages on loopback, with a generated configuration under a temporary directory, and
//! `ci/slurm-grading.sbatch` submitted as docs/grading.md says (a job array, then the merge
//! job with `--dependency=afterany`). The merged gradebook must equal a single-machine grading
//! of the same class; a cancelled share must be named missing by the merge; every daemon and
//! job is stopped by pid afterwards.
//!
//! Needs root (Slurm's daemons run as root here) and the packages slurmctld, slurmd,
//! slurm-client and munge, which `ci/test` installs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{grade_rows, GradeRow};

const TPROX: &str = env!("CARGO_BIN_EXE_tprox");

/// The job file under test, as a course would copy it.
fn job_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/slurm-grading.sbatch")
}

/// A Slurm cluster of one node, this machine, on loopback: its daemons are this test's
/// children, stopped by pid when it is dropped, after every job of it is cancelled.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    /// munged, slurmctld, slurmd: in the order they are stopped in reverse.
    daemons: Vec<(&'static str, Child)>,
}

/// Where `name` is installed: on PATH, or in /usr/sbin where Debian puts the daemons (a PATH
/// without the sbin directories is common outside a login shell).
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

impl Cluster {
    fn start() -> Cluster {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the Slurm test runs Slurm's daemons as root: run it as root (ci/test does)"
        );
        for name in [
            "munged",
            "slurmctld",
            "slurmd",
            "sbatch",
            "squeue",
            "scancel",
        ] {
            assert!(
                program(name).is_some(),
                "{name} is missing: install slurmctld slurmd slurm-client munge (ci/test does)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("tprox-slurm-")
            .tempdir()
            .unwrap();
        let path = dir.path().to_path_buf();
        for sub in ["state", "spool", "class"] {
            std::fs::create_dir(path.join(sub)).unwrap();
        }
        let key: Vec<u8> = (0..1024).map(|_| fastrand::u8(..)).collect();
        std::fs::write(path.join("munge.key"), key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            path.join("munge.key"),
            std::fs::Permissions::from_mode(0o400),
        )
        .unwrap();
        // NodeName must be the host's short name: slurmd finds its node by it.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let host = host.trim().split('.').next().unwrap().to_string();
        // The job file asks for 2 CPUs per task; a smaller machine is told it has 2.
        let cpus = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .max(2);
        let p = path.display().to_string();
        let conf = path.join("slurm.conf");
        std::fs::write(
            &conf,
            format!(
                "ClusterName=tprox\nSlurmctldHost={host}(127.0.0.1)\nSlurmUser=root\n\
                 SlurmdUser=root\nSlurmctldPort={}\nSlurmdPort={}\nAuthType=auth/munge\n\
                 AuthInfo=socket={p}/munge.sock\nCredType=cred/munge\n\
                 StateSaveLocation={p}/state\nSlurmdSpoolDir={p}/spool\n\
                 SlurmctldPidFile={p}/slurmctld.pid\nSlurmdPidFile={p}/slurmd.pid\n\
                 SlurmctldLogFile={p}/slurmctld.log\nSlurmdLogFile={p}/slurmd.log\n\
                 ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
                 JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
                 SchedulerType=sched/builtin\nSelectType=select/cons_tres\n\
                 SelectTypeParameters=CR_Core\nSlurmdParameters=config_overrides\n\
                 ReturnToService=2\nMpiDefault=none\n\
                 NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN\n\
                 PartitionName=tprox Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
                free_port(),
                free_port()
            ),
        )
        .unwrap();
        let mut cluster = Cluster {
            dir,
            conf,
            daemons: Vec::new(),
        };
        let started = Instant::now();
        // munged as root (--force): the daemons and jobs are root's, and its socket is ours.
        cluster.spawn(
            "munged",
            &[
                "-F",
                "--force",
                &format!("--socket={p}/munge.sock"),
                &format!("--key-file={p}/munge.key"),
                &format!("--pid-file={p}/munged.pid"),
                &format!("--log-file={p}/munged.log"),
                &format!("--seed-file={p}/munged.seed"),
            ],
        );
        cluster.wait_for("munged's socket", |c| {
            c.dir.path().join("munge.sock").exists()
        });
        let conf = cluster.conf.display().to_string();
        cluster.spawn("slurmctld", &["-D", "-f", &conf]);
        cluster.spawn("slurmd", &["-D", "-f", &conf]);
        cluster.wait_for("the node to be idle", |c| {
            c.client("sinfo", &["-h", "-o", "%T"])
                .is_some_and(|state| state.trim() == "idle")
        });
        eprintln!(
            "the cluster came up in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        cluster
    }

    fn spawn(&mut self, name: &'static str, args: &[&str]) {
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.out"))).unwrap();
        let child = Command::new(program(name).unwrap())
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.daemons.push((name, child));
    }

    /// Waits up to a minute for `ready`, or fails with the daemons' logs.
    fn wait_for(&mut self, what: &str, ready: impl Fn(&Cluster) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready(self) {
            if let Some(ended) = self.ended() {
                panic!("{ended} while waiting for {what}:\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within 60 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A daemon that has ended, and how.
    fn ended(&mut self) -> Option<String> {
        self.daemons
            .iter_mut()
            .find_map(|(name, child)| match child.try_wait() {
                Ok(Some(status)) => Some(format!("{name} ended ({status})")),
                _ => None,
            })
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for name in ["munged", "slurmctld", "slurmd"] {
            let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.out")))
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            all.push_str(&format!("--- {name}\n"));
            for line in tail.iter().rev() {
                all.push_str(&format!("{line}\n"));
            }
        }
        all
    }

    /// A client command's output, or `None` when it failed.
    fn client(&self, name: &str, args: &[&str]) -> Option<String> {
        let out = Command::new(program(name)?)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Submits with sbatch from `dir`, tprox on the job's PATH; the job's id.
    fn sbatch(&self, dir: &Path, args: &[&str]) -> String {
        let tprox_dir = Path::new(TPROX).parent().unwrap();
        let path = format!(
            "{}:{}",
            tprox_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new(program("sbatch").unwrap())
            .arg("--parsable")
            .args(args)
            .current_dir(dir)
            .env("SLURM_CONF", &self.conf)
            .env("PATH", path)
            .env("TPROX_EXE", TPROX)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sbatch {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Waits until the cluster has no job left, up to `limit`.
    fn wait_idle(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let queue = self.client("squeue", &["-h", "-o", "%i %T %r"]);
            if queue.as_deref().is_some_and(|q| q.trim().is_empty()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "jobs still queued after {} s: {queue:?}\n{}",
                limit.as_secs(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Every job of this cluster first, then its daemons, newest first, each by pid.
        let _ = self.client("scancel", &["--user=root"]);
        for (name, child) in self.daemons.iter_mut().rev() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    eprintln!("{name} did not stop on SIGTERM: killed");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The pids of processes whose environment names `conf` as their SLURM_CONF: the daemons,
/// slurmstepd and the jobs' processes of one cluster.
fn processes_of(conf: &Path) -> Vec<u32> {
    let needle = format!("SLURM_CONF={}", conf.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = state.split_whitespace().nth(2) == Some("Z");
            !zombie
                && environ
                    .split(|b| *b == 0)
                    .any(|var| var == needle.as_bytes())
        })
        .collect()
}

/// A class like the example's: the reference proxy (three times), one pointed at a destination
/// that refuses (it fails the cases), and one that never starts; graded in the sandbox, as the
/// job file's nodes are meant to.
fn write_class(dir: &Path) {
    std::fs::write(
        dir.join("grading.toml"),
        format!(
            "[run]\nstart = \"./tcpproxy {{dest_host}} {{dest_port}} {{listen_port}}\"\n\
             stall_timeout = 2\nseed = 6824\n[points]\n\"echo/single\" = 1\n\
             \"connect/refused\" = 1\n\"shutdown/one-way\" = 2\n\
             [sandbox]\nmode = \"namespaces\"\nshare = [\"{TPROX}\"]\n"
        ),
    )
    .unwrap();
    let good = "exec \"$TPROX_EXE\" __reference-proxy \"$@\"";
    let refused = "exec \"$TPROX_EXE\" __reference-proxy \"$1\" 1 \"$3\"";
    for (name, script) in [
        ("ann", good),
        ("ben", good),
        ("cat", refused),
        ("dan", "echo 'no proxy here' >&2; exit 3"),
        ("eve", good),
    ] {
        let sub = dir.join("submissions").join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let script_path = sub.join("tcpproxy");
        std::fs::write(&script_path, format!("#!/bin/sh\n{script}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Each submission's row, as the gradebook at `book` says it, by name.
fn summary(book: &Path) -> Vec<GradeRow> {
    let text = std::fs::read_to_string(book)
        .unwrap_or_else(|e| panic!("{} was not written: {e}", book.display()));
    grade_rows(&serde_json::from_str(&text).unwrap())
}

/// The job file's array of three shares and the merge job after it, as its comment says.
fn submit_grading(cluster: &Cluster, class: &Path, hold: bool) -> (String, String) {
    let job = job_file().display().to_string();
    let mut args = vec!["--array=1-3"];
    if hold {
        args.push("--hold");
    }
    args.push(&job);
    let array = cluster.sbatch(class, &args);
    let merge = cluster.sbatch(
        class,
        &[
            &format!("--dependency=afterany:{array}"),
            "--output=merge.log",
            "--wrap",
            "tprox grade merge --out grades part-*/gradebook.json",
        ],
    );
    (array, merge)
}

#[test]
fn the_slurm_job_file_grades_a_class_in_shares_that_merge_into_the_single_machine_gradebook() {
    let started = Instant::now();
    let mut cluster = Cluster::start();
    let class = cluster.dir.path().join("class");
    write_class(&class);

    // The same class on this machine alone, for comparison.
    let single = Command::new(TPROX)
        .args(["grade", "grading.toml"])
        .args(["ann", "ben", "cat", "dan", "eve"].map(|name| format!("submissions/{name}")))
        .args(["--out", "single"])
        .current_dir(&class)
        .env("TPROX_EXE", TPROX)
        .output()
        .unwrap();
    assert!(
        single.status.success(),
        "{}",
        String::from_utf8_lossy(&single.stderr)
    );

    let (array, _) = submit_grading(&cluster, &class, false);
    cluster.wait_idle(Duration::from_secs(600));
    let merged = summary(&class.join("grades/gradebook.json"));
    assert_eq!(merged, summary(&class.join("single/gradebook.json")));
    assert_eq!(merged.len(), 5);
    for k in 1..=3 {
        let log = class.join(format!("grade-{array}_{k}.log"));
        assert!(
            log.exists(),
            "task {k}'s log {} (the job file's --output)",
            log.display()
        );
    }
    let said = std::fs::read_to_string(class.join("merge.log")).unwrap();
    assert!(
        said.contains("merged 3 gradebook(s), 5 submission(s)"),
        "{said}"
    );

    // A task requeued (as a node failure or a preemption requeues it) resumes its share: the
    // job file's --resume finds every submission of it recorded, and grades none again.
    let share = class.join("part-1/gradebook.json");
    let before = summary(&share);
    assert!(cluster
        .client("scontrol", &["requeue", &format!("{array}_1")])
        .is_some());
    // A requeued job waits two minutes before it may start again; this one need not.
    assert!(cluster
        .client(
            "scontrol",
            &["update", &format!("jobid={array}_1"), "StartTime=now"]
        )
        .is_some());
    cluster.wait_idle(Duration::from_secs(600));
    let log = std::fs::read_to_string(class.join(format!("grade-{array}_1.log"))).unwrap();
    assert!(
        log.contains("no grading to resume") && log.contains("already graded, 0 to go"),
        "{log}"
    );
    assert_eq!(summary(&share), before);

    // A share cancelled before it ran: the merge still runs (afterany) and says it is missing.
    let second = cluster.dir.path().join("second");
    std::fs::create_dir(&second).unwrap();
    write_class(&second);
    let (array, _) = submit_grading(&cluster, &second, true);
    assert!(cluster
        .client("scancel", &[&format!("{array}_2")])
        .is_some());
    assert!(cluster.client("scontrol", &["release", &array]).is_some());
    cluster.wait_idle(Duration::from_secs(600));
    let said = std::fs::read_to_string(second.join("merge.log")).unwrap();
    assert!(said.contains("partition(s) 2/3 missing"), "{said}");
    assert_eq!(summary(&second.join("grades/gradebook.json")).len(), 3);

    let conf = cluster.conf.clone();
    assert!(!processes_of(&conf).is_empty(), "the daemons are found");
    drop(cluster);
    let left = processes_of(&conf);
    assert!(
        left.is_empty(),
        "processes of the cluster left running: {left:?}"
    );
    eprintln!(
        "the whole test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
