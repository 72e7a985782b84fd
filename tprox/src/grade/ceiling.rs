//! Memory and process ceilings per submission, with cgroups.
//!
//! rlimits bound each process; a submission that starts many processes, or fills its `/tmp`
//! at every start of its proxy, multiplies them. A cgroup bounds them together: every process
//! of the submission's box (its build and each start of its proxy) joins the submission's
//! cgroups before bubblewrap starts ([`crate::proxy::jail::Jail`]), and the kernel counts the
//! memory they use (the pages of its tmpfs `/tmp` and box included) and the processes they
//! run against one ceiling.
//!
//! Which cgroups: version 2 where the machine has it (one directory with the `memory` and
//! `pids` controllers); version 1 where it has those two controllers mounted
//! (`/sys/fs/cgroup/memory`, `/sys/fs/cgroup/pids`), as many CI runners and older servers do.
//! Each submission's cgroups are made under tprox's own, so whatever bounds tprox still bounds
//! them. Without either (or without root, which may write there), the per-process rlimits are
//! the last resort, and `--check-sandbox` says so.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How the ceilings are held on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// cgroup v2: the directory tprox makes submissions' cgroups in.
    V2 { parent: PathBuf },
    /// cgroup v1: the directories (memory, pids) tprox makes them in.
    V1 { memory: PathBuf, pids: PathBuf },
    /// Neither: why not.
    Rlimits { why: String },
}

const ROOT: &str = "/sys/fs/cgroup";

impl Mechanism {
    /// What this machine offers tprox, found by looking at its cgroups and tprox's place in
    /// them.
    pub fn probe() -> Mechanism {
        if !nix::unistd::geteuid().is_root() {
            return Mechanism::Rlimits {
                why: "tprox is not root, and only root may make cgroups here".into(),
            };
        }
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let place = |controller: &str| {
            own.lines().find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
                list.split(',')
                    .any(|c| c == controller)
                    .then(|| path.trim_start_matches('/').to_string())
            })
        };
        let v2 = Path::new(ROOT).join("cgroup.controllers");
        if let Ok(controllers) = std::fs::read_to_string(&v2) {
            let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
            return match (has("memory"), has("pids")) {
                (true, true) => {
                    let path = own
                        .lines()
                        .find_map(|l| l.strip_prefix("0::"))
                        .unwrap_or("/")
                        .trim_start_matches('/');
                    Mechanism::V2 {
                        parent: below(Path::new(ROOT), path),
                    }
                }
                _ => Mechanism::Rlimits {
                    why: format!(
                        "cgroup v2 without the memory and pids controllers ({}: {})",
                        v2.display(),
                        controllers.trim()
                    ),
                },
            };
        }
        let memory = Path::new(ROOT).join("memory");
        let pids = Path::new(ROOT).join("pids");
        match (place("memory"), place("pids")) {
            (Some(m), Some(p)) if memory.join("cgroup.procs").exists() => Mechanism::V1 {
                memory: below(&memory, &m),
                pids: below(&pids, &p),
            },
            _ => Mechanism::Rlimits {
                why: "no cgroup v2, and no cgroup v1 memory and pids controllers".into(),
            },
        }
    }

    /// What `--check-sandbox` says.
    pub fn describe(&self) -> String {
        match self {
            Mechanism::V2 { parent } => {
                format!("cgroup v2 (memory, pids), under {}", parent.display())
            }
            Mechanism::V1 { memory, pids } => format!(
                "cgroup v1 (memory under {}, pids under {})",
                memory.display(),
                pids.display()
            ),
            Mechanism::Rlimits { why } => {
                format!("none: per-process rlimits only ({why})")
            }
        }
    }
}

/// `place` under `root`, or `root` itself for the top of the hierarchy.
fn below(root: &Path, place: &str) -> PathBuf {
    match place {
        "" => root.to_path_buf(),
        place => root.join(place),
    }
}

/// One submission's cgroups, removed when dropped.
#[derive(Debug)]
pub struct Ceiling {
    /// The cgroup directories, made by tprox.
    dirs: Vec<PathBuf>,
    version: u8,
    memory_mib: u64,
    processes: u64,
}

impl Ceiling {
    /// Makes the cgroups of one submission, named `name` (unique on the machine), with these
    /// ceilings; `Ok(None)` where the machine offers none.
    pub fn make(
        mechanism: &Mechanism,
        name: &str,
        memory_mib: u64,
        processes: u64,
    ) -> Result<Option<Ceiling>, String> {
        let memory = (memory_mib * 1024 * 1024).to_string();
        let processes_text = processes.to_string();
        let write = |dir: &Path, file: &str, value: &str| {
            std::fs::write(dir.join(file), value)
                .map_err(|e| format!("cannot set {}: {e}", dir.join(file).display()))
        };
        let make = |dir: PathBuf| {
            std::fs::create_dir(&dir)
                .map(|()| dir.clone())
                .map_err(|e| format!("cannot make the cgroup {}: {e}", dir.display()))
        };
        let ceiling = match mechanism {
            Mechanism::Rlimits { .. } => return Ok(None),
            Mechanism::V2 { parent } => {
                enable_v2(parent)?;
                let dir = make(parent.join(name))?;
                let ceiling = Ceiling {
                    dirs: vec![dir.clone()],
                    version: 2,
                    memory_mib,
                    processes,
                };
                write(&dir, "memory.max", &memory)?;
                // Not swapped out past the ceiling either.
                let _ = write(&dir, "memory.swap.max", "0");
                write(&dir, "pids.max", &processes_text)?;
                ceiling
            }
            Mechanism::V1 { memory: m, pids: p } => {
                let mut ceiling = Ceiling {
                    dirs: vec![make(m.join(name))?],
                    version: 1,
                    memory_mib,
                    processes,
                };
                ceiling.dirs.push(make(p.join(name))?);
                let (memory_dir, pids_dir) = (&ceiling.dirs[0], &ceiling.dirs[1]);
                write(memory_dir, "memory.limit_in_bytes", &memory)?;
                // Where swap is counted, memory and swap together stop at the same ceiling.
                let _ = write(memory_dir, "memory.memsw.limit_in_bytes", &memory);
                write(pids_dir, "pids.max", &processes_text)?;
                ceiling
            }
        };
        Ok(Some(ceiling))
    }

    /// The `cgroup.procs` files the box's processes join.
    pub fn procs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// The lines for the row's `limits`: which ceiling the submission reached, with the
    /// memory it used at its peak.
    pub fn reached(&self) -> Vec<String> {
        let read = |dir: &Path, file: &str| std::fs::read_to_string(dir.join(file)).ok();
        let number = |text: Option<String>| text.and_then(|t| t.trim().parse::<u64>().ok());
        let event = |text: Option<String>, key: &str| {
            text.and_then(|t| {
                t.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == key).then(|| v.trim().parse::<u64>().ok()).flatten()
                })
            })
        };
        let (memory_hit, peak, pids_hit) = match self.version {
            2 => {
                let dir = &self.dirs[0];
                let events = read(dir, "memory.events");
                (
                    event(events.clone(), "max").unwrap_or(0) > 0
                        || event(events, "oom_kill").unwrap_or(0) > 0,
                    number(read(dir, "memory.peak")),
                    event(read(dir, "pids.events"), "max").unwrap_or(0) > 0,
                )
            }
            _ => {
                // The kernel's count of failed charges (memory.failcnt) stays 0 on some
                // kernels while the OOM killer acts; its kills and the peak at the ceiling
                // say it either way.
                let dir = &self.dirs[0];
                let peak = number(read(dir, "memory.max_usage_in_bytes"));
                (
                    number(read(dir, "memory.failcnt")).unwrap_or(0) > 0
                        || event(read(dir, "memory.oom_control"), "oom_kill").unwrap_or(0) > 0
                        || peak.is_some_and(|p| p >= self.memory_mib * 1024 * 1024),
                    peak,
                    event(read(&self.dirs[1], "pids.events"), "max").unwrap_or(0) > 0,
                )
            }
        };
        let mut lines = Vec::new();
        if memory_hit {
            lines.push(format!(
                "memory ceiling reached: all its processes together{} ([limits] memory_mib = {})",
                peak.map_or(String::new(), |p| format!(
                    " used at most {} MiB",
                    p.div_ceil(1024 * 1024)
                )),
                self.memory_mib
            ));
        }
        if pids_hit {
            lines.push(format!(
                "process ceiling reached: a fork failed ([sandbox] processes = {})",
                self.processes
            ));
        }
        lines
    }
}

impl Drop for Ceiling {
    /// Removes the cgroups. The box's processes are gone by now, or going (their pid namespace
    /// ended with the box); any still listed are killed as tprox's own, each only while it is
    /// still a member (see [`kill_member`]).
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(2);
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            loop {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                let pids = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                    kill_member(pid, &name);
                }
                if Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Kills process `pid` if it is still in the cgroup called `name`. A pid read from
/// `cgroup.procs` may belong to a process that has ended since, and on a machine whose pids
/// wrap (32768 of them, with a fork bomb in the class) be another's by now: killing it by
/// number once killed the next submission's helper. A pidfd holds the process itself, so the
/// membership checked after opening it is that process's or a newcomer's, and the signal
/// goes to the pidfd's process only.
fn kill_member(pid: i32, name: &str) {
    // SAFETY: plain system calls on integers; the descriptor is owned and closed below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return;
    }
    let pidfd = pidfd as i32;
    let member = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|groups| {
            groups
                .lines()
                .any(|line| line.ends_with(&format!("/{name}")))
        })
        .unwrap_or(false);
    if member {
        // SAFETY: as above; a null siginfo, no flags.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd,
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
    }
    // SAFETY: the descriptor was opened above and is not used after.
    unsafe { libc::close(pidfd) };
}

/// Lets the children of `parent` have the memory and pids controllers. A cgroup v2 with
/// processes of its own may not hand controllers down ("no internal processes"), so tprox
/// first moves itself into a leaf of its own below it.
fn enable_v2(parent: &Path) -> Result<(), String> {
    let control = parent.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&control).unwrap_or_default();
    if enabled.contains("memory") && enabled.contains("pids") {
        return Ok(());
    }
    if std::fs::write(&control, "+memory +pids").is_ok() {
        return Ok(());
    }
    let leaf = parent.join(format!("tprox-{}", std::process::id()));
    let _ = std::fs::create_dir(&leaf);
    std::fs::write(leaf.join("cgroup.procs"), "0")
        .and_then(|()| std::fs::write(&control, "+memory +pids"))
        .map_err(|e| {
            format!(
                "cannot enable the memory and pids controllers in {}: {e}",
                control.display()
            )
        })
}

#[cfg(test)]
mod tests {
    /// A process is killed only while it is in the named cgroup: a pid that now belongs to a
    /// process elsewhere is left alone.
    #[test]
    fn only_a_member_of_the_cgroup_is_killed() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        kill_member(pid, "tprox-no-such-cgroup");
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            child.try_wait().unwrap().is_none(),
            "a non-member was killed"
        );
        // Its own cgroup, as /proc names it (the root's "/" has no name: then nothing to show).
        let groups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let own = groups
            .lines()
            .filter_map(|line| line.rsplit('/').next())
            .find(|name| !name.is_empty())
            .map(String::from);
        match own {
            Some(name) => {
                kill_member(pid, &name);
                let status = child.wait().unwrap();
                assert!(!status.success(), "the member was not killed");
            }
            None => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    use super::*;

    /// The files of both cgroup versions, as the kernel's documentation gives them, in plain
    /// directories: what tprox writes, and what it reads back into the row. (The kernel's own
    /// enforcement is tried by `tests/hostile.rs`, on the version the machine has.)
    #[test]
    fn ceilings_are_written_and_read_back_in_each_versions_files() {
        let dir = tempfile::tempdir().unwrap();
        let v2 = Mechanism::V2 {
            parent: dir.path().to_path_buf(),
        };
        let ceiling = Ceiling::make(&v2, "ann", 256, 300).unwrap().unwrap();
        let cg = dir.path().join("ann");
        let read = |file: &str| std::fs::read_to_string(cg.join(file)).unwrap();
        assert_eq!(read("memory.max"), (256u64 << 20).to_string());
        assert_eq!(read("pids.max"), "300");
        assert!(
            std::fs::read_to_string(dir.path().join("cgroup.subtree_control"))
                .unwrap()
                .contains("+memory +pids")
        );
        assert_eq!(ceiling.procs(), [cg.join("cgroup.procs")]);
        assert!(ceiling.reached().is_empty());
        std::fs::write(
            cg.join("memory.events"),
            "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n",
        )
        .unwrap();
        std::fs::write(cg.join("memory.peak"), (256u64 << 20).to_string()).unwrap();
        std::fs::write(cg.join("pids.events"), "max 3\n").unwrap();
        assert_eq!(
            ceiling.reached(),
            [
                "memory ceiling reached: all its processes together used at most 256 MiB \
                 ([limits] memory_mib = 256)",
                "process ceiling reached: a fork failed ([sandbox] processes = 300)"
            ]
        );
        std::mem::forget(ceiling);

        let (memory, pids) = (dir.path().join("memory"), dir.path().join("pids"));
        std::fs::create_dir_all(&memory).unwrap();
        std::fs::create_dir_all(&pids).unwrap();
        let v1 = Mechanism::V1 {
            memory: memory.clone(),
            pids: pids.clone(),
        };
        let ceiling = Ceiling::make(&v1, "ben", 128, 50).unwrap().unwrap();
        let (m, p) = (memory.join("ben"), pids.join("ben"));
        assert_eq!(
            std::fs::read_to_string(m.join("memory.limit_in_bytes")).unwrap(),
            (128u64 << 20).to_string()
        );
        assert_eq!(std::fs::read_to_string(p.join("pids.max")).unwrap(), "50");
        assert_eq!(
            ceiling.procs(),
            [m.join("cgroup.procs"), p.join("cgroup.procs")]
        );
        // memory.failcnt stays 0 on some kernels: the OOM killer's count tells.
        std::fs::write(m.join("memory.failcnt"), "0").unwrap();
        std::fs::write(
            m.join("memory.max_usage_in_bytes"),
            (100u64 << 20).to_string(),
        )
        .unwrap();
        std::fs::write(
            m.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(
            ceiling.reached(),
            [
                "memory ceiling reached: all its processes together used at most 100 MiB \
              ([limits] memory_mib = 128)"
            ]
        );
        std::mem::forget(ceiling);
    }
}
