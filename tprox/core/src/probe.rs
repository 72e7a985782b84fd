//! Reading the proxy's state under /proc: descriptors, resident memory and CPU time of its
//! process group, and the queues of its TCP sockets.
//!
//! The proxy is measured as its whole process group (it may fork workers), which is the group
//! tprox started it in. Its sockets are found by their addresses: the proxy's end of a
//! connection is the entry whose local address is tprox's peer address and the other way round.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Resource use of a proxy's process group at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// Open descriptors, summed over the group's processes.
    pub fds: usize,
    /// Of those, the sockets: what a proxy's connections hold. The rest (pipes, epoll and
    /// event descriptors, files) may be a runtime's own pools, which grow to a peak and stay
    /// (Go splices through pipes it keeps in a pool until the next collection), so the
    /// descriptor cases judge them apart.
    pub sockets: usize,
    /// Resident memory in bytes.
    pub rss: u64,
    /// User plus system CPU time used so far.
    pub cpu: Duration,
    /// Time the group's threads have spent runnable but waiting for a CPU so far (the
    /// scheduler's run delay, `/proc/PID/task/TID/schedstat`; zero where the kernel does not
    /// keep it). With `cpu`, what the proxy wanted to run: a busy-waiting proxy on a machine
    /// too loaded to give it a core still wants one, and a loaded machine cannot hide it.
    pub waiting: Duration,
    /// Processes in the group.
    pub processes: usize,
}

/// One process of a group, as /proc shows it: running, or exited and not yet reaped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupProcess {
    /// Its process id.
    pub pid: i32,
    /// Resident memory in bytes.
    pub rss: u64,
    /// User plus system CPU time it has used.
    pub cpu: Duration,
    /// The same for its children that have exited and been reaped (socat's per-connection
    /// children, for instance).
    pub children_cpu: Duration,
    /// A zombie: it has exited and waits for its parent (or tprox, the subreaper of orphans)
    /// to reap it. It holds no descriptor and no memory, but its CPU time is still its own.
    pub exited: bool,
}

/// The processes of group `pgid`: the one walk of /proc that every measurement of a proxy's
/// group uses. Zombies are included (marked [`GroupProcess::exited`]) because a proxy that
/// forks a child per connection and lets it go (redir double-forks) leaves finished children
/// that no process of the group reaps: tprox, their subreaper, does when it sweeps. Until
/// then their CPU time is in no group member's `children_cpu`, and leaving them out lost the
/// CPU of every connection that ended inside a measurement.
pub fn group(pgid: i32) -> Result<Vec<GroupProcess>, String> {
    let processes =
        procfs::process::all_processes().map_err(|e| format!("needs /proc (Linux): {e}"))?;
    let page = procfs::page_size();
    let ticks = procfs::ticks_per_second() as f64;
    let seconds = |ticks_used: u64| Duration::from_secs_f64(ticks_used as f64 / ticks);
    Ok(processes
        .flatten()
        .filter_map(|process| process.stat().ok())
        .filter(|stat| stat.pgrp == pgid && stat.state != 'X')
        .map(|stat| GroupProcess {
            pid: stat.pid,
            rss: stat.rss * page,
            cpu: seconds(stat.utime + stat.stime),
            children_cpu: seconds((stat.cutime + stat.cstime).max(0) as u64),
            exited: stat.state == 'Z',
        })
        .collect())
}

/// Samples the resources of process group `pgid`. Fails when /proc cannot be read (not Linux,
/// or hidden), so that the caller can skip with the reason rather than pass silently.
pub fn sample(pgid: i32) -> Result<Usage, String> {
    let mut usage = Usage {
        fds: 0,
        sockets: 0,
        rss: 0,
        cpu: Duration::ZERO,
        waiting: Duration::ZERO,
        processes: 0,
    };
    for process in group(pgid)?.into_iter().filter(|p| !p.exited) {
        usage.processes += 1;
        usage.rss += process.rss;
        usage.cpu += process.cpu;
        usage.waiting += run_delay(process.pid);
        let (all, sockets) = descriptors(process.pid)
            .map_err(|e| format!("cannot count the proxy's descriptors: {e}"))?;
        usage.fds += all;
        usage.sockets += sockets;
    }
    if usage.processes == 0 {
        return Err(format!("no process of group {pgid} found under /proc"));
    }
    Ok(usage)
}

/// The run delay of every thread of process `pid` (the second field of each thread's
/// schedstat, in nanoseconds), summed; zero where the kernel keeps none.
fn run_delay(pid: i32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// How many descriptors process `pid` holds, and how many of them are sockets. Not procfs's
/// `fd_count`: where the kernel does not report the count as the directory's size (before
/// Linux 6.2, and always for a process with no descriptors), it counts `.` and `..` too, two
/// phantom descriptors per process.
fn descriptors(pid: i32) -> std::io::Result<(usize, usize)> {
    let entries = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(entries) => entries,
        // The process exited between listing and counting: it holds nothing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let (mut all, mut sockets) = (0, 0);
    for entry in entries.flatten() {
        // A descriptor closed between the listing and the link's read is no longer held: not
        // counted at all. Counting it as "not a socket" made a proxy closing its sockets look,
        // for one sample, as if it had opened other descriptors.
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        all += 1;
        if target
            .as_os_str()
            .as_encoded_bytes()
            .starts_with(b"socket:")
        {
            sockets += 1;
        }
    }
    Ok((all, sockets))
}

/// Bytes queued in one TCP socket, as the kernel reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Queues {
    /// Written by the socket's owner and not yet acknowledged by the peer.
    pub send: u64,
    /// Received from the peer and not yet read by the socket's owner.
    pub receive: u64,
    /// Room left in the send buffer before the socket stops being reported writable, in the
    /// kernel's accounting (which counts each packet's overhead too, so less payload than
    /// this fits). Linux reports a socket writable while at most two thirds of its send
    /// buffer are queued, so a proxy that waits for writability writes no more than that.
    pub send_room: u64,
}

/// The queues of chosen TCP sockets at one moment.
pub struct TcpTable(HashMap<(SocketAddr, SocketAddr), Queues>);

impl TcpTable {
    /// Looks up the sockets given as (local, remote) pairs; a socket that does not exist is
    /// left out. Uses the kernel's `sock_diag` netlink interface, which finds one socket by its
    /// addresses directly: `/proc/net/tcp` would list every socket of the machine (thousands in
    /// TIME_WAIT after a few runs) on every look, and a case looks every few milliseconds.
    /// Fails where the interface is missing (not Linux), so that a case can say what it could
    /// not check.
    pub fn read(sockets: &[(SocketAddr, SocketAddr)]) -> Result<Self, String> {
        let diag = sock_diag::Socket::open()?;
        let mut table = HashMap::new();
        for &(local, remote) in sockets {
            if let Some(queues) = diag.queues(local, remote)? {
                table.insert((local, remote), queues);
            }
        }
        Ok(TcpTable(table))
    }

    /// The socket bound to `local` and connected to `remote`, if it exists.
    pub fn queues(&self, local: SocketAddr, remote: SocketAddr) -> Option<Queues> {
        self.0.get(&(local, remote)).copied()
    }
}

/// The little of the `sock_diag` netlink protocol (linux/inet_diag.h) that one exact socket
/// lookup needs.
mod sock_diag {
    use std::net::{IpAddr, SocketAddr};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::Queues;

    const NETLINK_SOCK_DIAG: libc::c_int = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const INET_DIAG_NOCOOKIE: u32 = !0;
    const HEADER: usize = 16;
    /// `struct inet_diag_req_v2`.
    const REQUEST: usize = 56;
    /// Offsets in a reply of `struct inet_diag_msg`'s receive and send queues.
    const RQUEUE: usize = HEADER + 4 + 48 + 4;
    const WQUEUE: usize = RQUEUE + 4;
    /// Where the attributes start, after `struct inet_diag_msg`.
    const ATTRIBUTES: usize = HEADER + 72;
    /// The attribute with the socket's memory counters, and the counters this needs.
    const INET_DIAG_SKMEMINFO: u16 = 7;
    const SK_MEMINFO_SNDBUF: usize = 3;
    const SK_MEMINFO_WMEM_QUEUED: usize = 5;

    pub struct Socket(OwnedFd);

    impl Socket {
        pub fn open() -> Result<Self, String> {
            // SAFETY: plain socket(2); the descriptor is owned at once.
            let fd = unsafe {
                libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                    NETLINK_SOCK_DIAG,
                )
            };
            if fd < 0 {
                return Err(format!(
                    "needs the kernel's sock_diag interface (Linux): {}",
                    std::io::Error::last_os_error()
                ));
            }
            // SAFETY: `fd` is a new descriptor that nothing else owns.
            let socket = Socket(unsafe { OwnedFd::from_raw_fd(fd) });
            let limit = libc::timeval {
                tv_sec: 2,
                tv_usec: 0,
            };
            // SAFETY: a valid timeval for SO_RCVTIMEO, on a descriptor we own.
            unsafe {
                libc::setsockopt(
                    socket.0.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&limit as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                );
            }
            Ok(socket)
        }

        /// The queues of the TCP socket bound to `local` and connected to `remote`.
        pub fn queues(
            &self,
            local: SocketAddr,
            remote: SocketAddr,
        ) -> Result<Option<Queues>, String> {
            let family = match local.ip() {
                IpAddr::V4(_) => libc::AF_INET,
                IpAddr::V6(_) => libc::AF_INET6,
            };
            let mut request = Vec::with_capacity(HEADER + REQUEST);
            request.extend(((HEADER + REQUEST) as u32).to_ne_bytes());
            request.extend(SOCK_DIAG_BY_FAMILY.to_ne_bytes());
            request.extend((libc::NLM_F_REQUEST as u16).to_ne_bytes());
            request.extend(1u32.to_ne_bytes()); // sequence number
            request.extend(0u32.to_ne_bytes()); // port id: the kernel
            let extensions = 1u8 << (INET_DIAG_SKMEMINFO - 1);
            request.extend([family as u8, libc::IPPROTO_TCP as u8, extensions, 0]);
            request.extend((!0u32).to_ne_bytes()); // every state
            request.extend(local.port().to_be_bytes());
            request.extend(remote.port().to_be_bytes());
            request.extend(address_words(local.ip()));
            request.extend(address_words(remote.ip()));
            request.extend(0u32.to_ne_bytes()); // any interface
            request.extend(INET_DIAG_NOCOOKIE.to_ne_bytes());
            request.extend(INET_DIAG_NOCOOKIE.to_ne_bytes());
            let fd = self.0.as_raw_fd();
            // SAFETY: sends from a live buffer of the given length; the kernel is the default
            // destination of an unbound netlink socket.
            let sent = unsafe { libc::send(fd, request.as_ptr().cast(), request.len(), 0) };
            if sent < 0 {
                return Err(format!(
                    "sock_diag request failed: {}",
                    std::io::Error::last_os_error()
                ));
            }
            let mut reply = [0u8; 512];
            // SAFETY: receives into a live buffer of the given length.
            let got = unsafe { libc::recv(fd, reply.as_mut_ptr().cast(), reply.len(), 0) };
            if got < 0 {
                return Err(format!(
                    "sock_diag reply failed: {}",
                    std::io::Error::last_os_error()
                ));
            }
            let reply = &reply[..got as usize];
            let word = |at: usize| -> Option<u32> {
                Some(u32::from_ne_bytes(reply.get(at..at + 4)?.try_into().ok()?))
            };
            let kind = reply
                .get(4..6)
                .map(|b| u16::from_ne_bytes([b[0], b[1]]))
                .ok_or("sock_diag reply too short")?;
            if kind == SOCK_DIAG_BY_FAMILY {
                let (Some(receive), Some(send)) = (word(RQUEUE), word(WQUEUE)) else {
                    return Err("sock_diag reply too short".into());
                };
                return Ok(Some(Queues {
                    send: u64::from(send),
                    receive: u64::from(receive),
                    send_room: send_room(reply).unwrap_or(0),
                }));
            }
            // An error message: ENOENT means there is no such socket.
            let errno = word(HEADER).map_or(0, |e| -(e as i32));
            if kind == libc::NLMSG_ERROR as u16 && errno == libc::ENOENT {
                return Ok(None);
            }
            Err(format!(
                "sock_diag lookup failed: {}",
                std::io::Error::from_raw_os_error(errno)
            ))
        }
    }

    /// Two thirds of the send buffer's size less what is queued in it, from the SKMEMINFO
    /// attribute.
    fn send_room(reply: &[u8]) -> Option<u64> {
        let mut at = ATTRIBUTES;
        while at + 4 <= reply.len() {
            let len = u16::from_ne_bytes([reply[at], reply[at + 1]]) as usize;
            let kind = u16::from_ne_bytes([reply[at + 2], reply[at + 3]]);
            if len < 4 {
                return None;
            }
            if kind == INET_DIAG_SKMEMINFO {
                let counter = |i: usize| -> Option<u64> {
                    let from = at + 4 + 4 * i;
                    Some(u64::from(u32::from_ne_bytes(
                        reply.get(from..from + 4)?.try_into().ok()?,
                    )))
                };
                let (size, queued) = (
                    counter(SK_MEMINFO_SNDBUF)?,
                    counter(SK_MEMINFO_WMEM_QUEUED)?,
                );
                return Some((size * 2 / 3).saturating_sub(queued));
            }
            at += (len + 3) & !3;
        }
        None
    }

    /// An address as `struct inet_diag_sockid` holds it: four 32-bit words in network order,
    /// an IPv4 address in the first.
    fn address_words(ip: IpAddr) -> [u8; 16] {
        let mut words = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => words[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => words.copy_from_slice(&v6.octets()),
        }
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zombie_in_the_group_holds_no_descriptors() {
        use std::os::unix::process::CommandExt;
        // The subshell exits at once; `sleep`, which replaces its parent, never reaps it.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "(exit 0) & exec sleep 5"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let zombie = loop {
            let zombies = procfs::process::all_processes()
                .unwrap()
                .flatten()
                .filter_map(|p| p.stat().ok())
                .filter(|s| s.pgrp == pgid && s.state == 'Z')
                .count();
            if zombies == 1 || std::time::Instant::now() > deadline {
                break zombies;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let usage = sample(pgid).unwrap();
        let sleeper = descriptors(pgid).unwrap().0;
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(zombie, 1, "the test needs a zombie in the group");
        assert_eq!(
            usage.processes, 1,
            "the zombie is not a process that counts"
        );
        assert_eq!(
            usage.fds, sleeper,
            "only the live process's descriptors count"
        );
    }

    #[test]
    fn a_zombie_keeps_its_cpu_time_in_the_group() {
        use std::os::unix::process::CommandExt;
        // A subshell that counts for a while and exits; `sleep` never reaps it, as redir's
        // main process never reaps the per-connection children it lets go.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "(i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done) & exec sleep 10",
            ])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        let deadline = std::time::Instant::now() + Duration::from_secs(8);
        let zombie = loop {
            let zombie = group(pgid).unwrap().into_iter().find(|p| p.exited);
            if zombie.is_some() || std::time::Instant::now() > deadline {
                break zombie;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = child.kill();
        let _ = child.wait();
        let zombie = zombie.expect("the counting subshell exits within 8 s and stays a zombie");
        assert!(
            zombie.cpu > Duration::ZERO,
            "the zombie's CPU time is still counted: {zombie:?}"
        );
    }

    #[test]
    fn reports_unread_bytes_in_both_ends_of_a_connection() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.write_all(&[7u8; 1000]).unwrap();
        let (a, b) = (client.local_addr().unwrap(), server.local_addr().unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let table = TcpTable::read(&[(a, b), (b, a)]).expect("/proc is readable here");
            let at_server = table.queues(b, a).expect("the server's socket is listed");
            let at_client = table.queues(a, b).expect("the client's socket is listed");
            if at_server.receive == 1000 && at_client.send == 0 {
                let nowhere: SocketAddr = "127.0.0.1:1".parse().unwrap();
                let table = TcpTable::read(&[(a, nowhere)]).unwrap();
                assert_eq!(table.queues(a, nowhere), None, "no such socket");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{at_server:?} {at_client:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn sockets_are_counted_apart_from_other_descriptors() {
        let me = std::process::id() as i32;
        // Other tests of this binary open and close descriptors in parallel: the difference
        // is looked for a few times until this test's own descriptors alone explain it.
        for _ in 0..50 {
            let (all_before, sockets_before) = descriptors(me).unwrap();
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let (reader, writer) = nix::unistd::pipe().unwrap();
            let (all, sockets) = descriptors(me).unwrap();
            drop((listener, reader, writer));
            if all == all_before + 3 && sockets == sockets_before + 1 {
                return;
            }
        }
        panic!("a listener and a pipe never showed as one socket and two other descriptors");
    }

    #[test]
    fn samples_its_own_process_group() {
        let pgid = nix::unistd::getpgrp().as_raw();
        let usage = sample(pgid).expect("/proc is readable here");
        assert!(usage.processes >= 1);
        assert!(usage.fds >= 3, "{usage:?}");
        assert!(usage.sockets <= usage.fds, "{usage:?}");
        assert!(usage.rss > 0);
    }
}
