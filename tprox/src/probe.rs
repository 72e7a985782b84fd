//! Reading the proxy's resource use under /proc: descriptors, resident memory, CPU time.
//!
//! The proxy is measured as its whole process group (it may fork workers), which is the group
//! tprox started it in.

use std::time::Duration;

/// Resource use of a proxy's process group at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// Open descriptors, summed over the group's processes.
    pub fds: usize,
    /// Resident memory in bytes.
    pub rss: u64,
    /// User plus system CPU time used so far.
    pub cpu: Duration,
    /// Processes in the group.
    pub processes: usize,
}

/// Samples the resources of process group `pgid`. Fails when /proc cannot be read (not Linux,
/// or hidden), so that the caller can skip with the reason rather than pass silently.
pub fn sample(pgid: i32) -> Result<Usage, String> {
    let processes =
        procfs::process::all_processes().map_err(|e| format!("needs /proc (Linux): {e}"))?;
    let page = procfs::page_size();
    let ticks = procfs::ticks_per_second() as f64;
    let mut usage = Usage {
        fds: 0,
        rss: 0,
        cpu: Duration::ZERO,
        processes: 0,
    };
    for process in processes.flatten() {
        let Ok(stat) = process.stat() else { continue };
        if stat.pgrp != pgid {
            continue;
        }
        usage.processes += 1;
        usage.rss += stat.rss * page;
        usage.cpu += Duration::from_secs_f64((stat.utime + stat.stime) as f64 / ticks);
        usage.fds += process
            .fd_count()
            .map_err(|e| format!("cannot count the proxy's descriptors: {e}"))?;
    }
    if usage.processes == 0 {
        return Err(format!("no process of group {pgid} found under /proc"));
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_its_own_process_group() {
        let pgid = nix::unistd::getpgrp().as_raw();
        let usage = sample(pgid).expect("/proc is readable here");
        assert!(usage.processes >= 1);
        assert!(usage.fds >= 3, "{usage:?}");
        assert!(usage.rss > 0);
    }
}
