//! `--pin-cpus`: each event loop on a CPU of its own, taking the clients whose handshake arrived
//! on that CPU.
//!
//! Why: a client's SYN is processed on the CPU that received it (on loopback, the CPU the
//! connecting program runs on). With every loop's listener marked with its loop's CPU
//! (`SO_INCOMING_CPU`, honoured by `SO_REUSEPORT` groups since Linux 6.1), the kernel queues the
//! client on the loop that runs there, so accepting, dialing and the first bytes need no wake-up
//! of another CPU. On a virtual machine, where waking an idle CPU is an exit to the hypervisor,
//! that is measured at 1.3x the default's connections per second and 0.85x its CPU time per
//! connection (docs/bench.md). The cost: a loop cannot move to an idle CPU, so when the
//! connections of one busy client all arrive on one CPU (a single-threaded program on the same
//! machine opening several bulk streams), one loop carries them all. Hence an option, as
//! nginx's `worker_cpu_affinity` is, and not the default.

use std::io;

use super::Site;

/// The CPUs of the loops, one each, in the order of the loops: the first `loops` of the CPUs
/// this process may run on. More loops than CPUs is refused, since two loops on one CPU would
/// share its clients and its time.
#[cfg(target_os = "linux")]
pub(crate) fn cpus_for(loops: usize) -> io::Result<Vec<usize>> {
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    let allowed = sched_getaffinity(Pid::from_raw(0)).map_err(io::Error::from)?;
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&cpu| allowed.is_set(cpu).unwrap_or(false))
        .collect();
    if loops > cpus.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "--pin-cpus needs a CPU for each of the {loops} event loops, and this process may \
                 run on {} ({}): give --threads {} or fewer, or leave --pin-cpus out",
                cpus.len(),
                list(&cpus),
                cpus.len()
            ),
        ));
    }
    Ok(cpus[..loops].to_vec())
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn cpus_for(_loops: usize) -> io::Result<Vec<usize>> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "--pin-cpus works on Linux only: leave it out",
    ))
}

/// Pins the calling thread (an event loop's) to `cpu`, and marks its listeners with it.
#[cfg(target_os = "linux")]
pub(super) fn pin(cpu: usize, sites: &[(std::net::TcpListener, Site)]) -> io::Result<()> {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let fail = |what: &str, e: io::Error| {
        io::Error::new(e.kind(), format!("--pin-cpus: {what} CPU {cpu}: {e}"))
    };
    let mut set = CpuSet::new();
    set.set(cpu)
        .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set))
        .map_err(|e| fail("could not run an event loop on", e.into()))?;
    for (listener, _) in sites {
        socket2::SockRef::from(listener)
            .set_cpu_affinity(cpu)
            .map_err(|e| fail("could not mark a listener with", e))?;
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub(super) fn pin(_cpu: usize, _sites: &[(std::net::TcpListener, Site)]) -> io::Result<()> {
    unreachable!("cpus_for refuses --pin-cpus")
}

/// CPU numbers as a list, runs joined: `0-3,6`.
fn list(cpus: &[usize]) -> String {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &cpu in cpus {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == cpu => *end = cpu,
            _ => runs.push((cpu, cpu)),
        }
    }
    runs.iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_list_joins_runs() {
        assert_eq!(list(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(list(&[1, 3]), "1,3");
        assert_eq!(list(&[]), "");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn more_loops_than_cpus_are_refused_with_what_to_do() {
        let e = cpus_for(100_000).unwrap_err();
        let message = e.to_string();
        assert!(message.contains("give --threads"), "{message}");
        assert_eq!(cpus_for(1).unwrap().len(), 1);
    }
}
