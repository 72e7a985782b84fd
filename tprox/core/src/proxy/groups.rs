//! The registry of live process groups, and the sweep that catches processes which left them.
//!
//! Every group tprox starts is registered here, so that an interrupted tprox ([`kill_all`])
//! leaves nothing behind, and so that [`sweep_orphans`] can tell a daemonized orphan (one
//! that moved to a session of its own) from a proxy that is still tracked.

use std::collections::BTreeSet;
use std::sync::Mutex;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Process groups of proxies that are running now.
static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Spawns `cmd` (already set to lead a process group of its own) and registers its group, so
/// that [`kill_all`] and [`sweep_orphans`] know it. The caller kills the group when done with
/// it and calls [`unregister`].
pub fn spawn_group(cmd: &mut Command) -> std::io::Result<Child> {
    // Register under the same lock as the spawn, so that an interrupt (or a sweep) arriving in
    // between cannot miss the new group.
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    let child = cmd.spawn()?;
    live.insert(child.id().expect("a just-spawned child has a pid") as i32);
    Ok(child)
}

/// Forgets a process group that has been stopped and reaped.
pub fn unregister(pgid: Pid) {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&pgid.as_raw());
}

/// Set once [`kill_all`] ran: what ends from now on was stopped, not finished.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether tprox is stopping everything it started (an interrupt).
pub fn stopping() -> bool {
    STOPPING.load(std::sync::atomic::Ordering::SeqCst)
}

/// Kills every running proxy's process group. For interrupts: tprox must leave nothing behind.
pub fn kill_all() {
    STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
    let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    for &pgid in live.iter() {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    }
}

/// Makes this process the "subreaper" of everything it starts: a process whose parent dies is
/// re-parented to tprox instead of to init, so that [`sweep_orphans`] can find it. This catches
/// what a process group cannot: a child that moved to a session of its own (a daemon).
pub fn become_subreaper() {
    // Best effort: without it (not Linux), process groups still contain the usual cases.
    let _ = nix::sys::prctl::set_child_subreaper(true);
}

/// Kills and reaps every child of tprox that is not the leader of a registered group: the
/// orphans re-parented to tprox (see [`become_subreaper`]). Repeats while killing one exposes
/// its own children. Returns how many processes it killed.
pub fn sweep_orphans() -> usize {
    use nix::sys::wait::waitpid;
    let me = std::process::id() as i32;
    let mut killed = 0;
    for _ in 0..100 {
        let orphans: Vec<i32> = {
            let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
            let orphans: Vec<i32> = children_of(me)
                .into_iter()
                .filter(|pid| !live.contains(pid))
                .collect();
            for &pid in &orphans {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            orphans
        };
        if orphans.is_empty() {
            break;
        }
        for pid in orphans {
            // Only orphans are waited for here, never a child that tokio tracks.
            let _ = waitpid(Pid::from_raw(pid), None);
            killed += 1;
        }
    }
    killed
}

/// The pids whose parent is `parent`, from /proc.
fn children_of(parent: i32) -> Vec<i32> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(|p| p.ok()?.stat().ok())
        .filter(|stat| stat.ppid == parent)
        .map(|stat| stat.pid)
        .collect()
}
