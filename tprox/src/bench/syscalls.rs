//! System calls per proxied connection: what the kernel is asked to do for each connection a
//! proxy carries, counted by strace over a fixed number of connections, outside the timed runs.
//!
//! The connection rate says how fast a proxy is on this machine; the count says why, and it
//! does not depend on the machine's load: two proxies that make the same calls per connection
//! cost the kernel about the same. The connections are made one at a time, so that no two are
//! ever batched into one wake-up (how many a proxy batches depends on timing, not on its
//! code), and strace slows the proxy down, which is why no timed figure is taken meanwhile.
//! Everything the proxy's processes call during the window counts, timers included: over a
//! few hundred connections a timer's calls are a fraction of one per connection.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::load::{self, Dial};

/// Connections counted, after [`WARMUP`] uncounted ones that let the proxy make its lazy
/// allocations and pools.
pub const CONNECTIONS: usize = 500;
const WARMUP: usize = 50;

/// How long strace may take to attach to every process, or to write its summary.
const STRACE_LIMIT: Duration = Duration::from_secs(10);

/// How long the counted connections may take in all: a proxy that is slow per connection
/// (v2ray closes the client about a second after the server, so 500 connections took minutes,
/// in every round) is counted over the connections made by then, so that one such proxy
/// cannot hold a many-round bench for many minutes. Every connection still counts whole: the
/// limit is looked at between connections.
pub const COUNT_LIMIT: Duration = Duration::from_secs(20);

/// The calls of one proxy per connection, overall and by call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Count {
    pub per_connection: f64,
    /// Per call name, how many of it per connection.
    pub by_call: BTreeMap<String, f64>,
}

/// Why the bench cannot count calls on this machine, or `None` when it can.
pub fn unavailable() -> Option<String> {
    match Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => None,
        _ => Some(
            "system calls per connection not measured: strace is not installed \
             (apt-get install strace)"
                .into(),
        ),
    }
}

/// Counts the calls that the processes of group `pgid` make while [`CONNECTIONS`] complete
/// connections go through `dial` to a [`load::Behaviour::Reply`] server, one at a time (or as
/// many as [`COUNT_LIMIT`] allows), per connection.
pub fn count(pgid: i32, dial: &Dial) -> io::Result<Count> {
    // The warm-up is bounded too, by a quarter of the count's time: a proxy that takes a
    // second per connection (v2ray closes the client a second after the server) would
    // otherwise spend most of a minute on it.
    let start = Instant::now();
    for made in 0..WARMUP {
        if made > 0 && start.elapsed() >= COUNT_LIMIT / 4 {
            break;
        }
        load::one_connection(dial)?;
    }
    let pids: Vec<i32> = tprox_core::probe::group(pgid)
        .map_err(io::Error::other)?
        .into_iter()
        .filter(|p| !p.exited)
        .map(|p| p.pid)
        .collect();
    if pids.is_empty() {
        return Err(io::Error::other("the proxy has no process left to trace"));
    }
    let summary = tempfile::Builder::new()
        .prefix("tprox-strace-")
        .tempfile()
        .map_err(|e| io::Error::other(format!("cannot make a file for strace's summary: {e}")))?;
    let mut command = Command::new("strace");
    // -f: a proxy that forks a child per connection (socat, redir) has the child's calls
    // counted too; each pid's threads are attached with it.
    command.args(["-f", "-c", "-o"]).arg(summary.path());
    for pid in &pids {
        command.arg("-p").arg(pid.to_string());
    }
    let mut strace = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::other(format!("cannot start strace: {e}")))?;
    let traced = (|| {
        let stderr = strace.stderr.take().expect("piped");
        wait_attached(stderr, pids.len())?;
        let start = Instant::now();
        let mut made = 0;
        while made < CONNECTIONS && (made == 0 || start.elapsed() < COUNT_LIMIT) {
            load::one_connection(dial)?;
            made += 1;
        }
        Ok::<_, io::Error>(made)
    })();
    // strace detaches from the proxy and writes its summary on SIGINT; the proxy runs on.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(strace.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let ended = wait_with_limit(&mut strace, STRACE_LIMIT);
    let made = traced?;
    ended?;
    let text = std::fs::read_to_string(summary.path())
        .map_err(|e| io::Error::other(format!("strace wrote no summary: {e}")))?;
    parse_summary(&text, made)
}

/// Reads strace's messages until it has answered for each of `processes` processes, on a
/// thread of its own so that a silent strace cannot hold the bench; the rest of its messages
/// are read and dropped there so that it never blocks on a full pipe.
///
/// A process may end between being listed and being attached (a child that socat forked for
/// a connection of the warm-up): strace then says it could not attach to it, and goes on with
/// the others. That is an answer too, as long as strace attached to at least one process; if
/// it attached to none, what it said is the error (typically no ptrace permission).
fn wait_attached(stderr: std::process::ChildStderr, processes: usize) -> io::Result<()> {
    let (attached, seen) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        let (mut traced, mut answered) = (0, 0);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let done = answered == processes;
            if line.contains(" attached") {
                traced += 1;
                answered += 1;
            } else if line.contains("attach: ") {
                answered += 1;
                if !done {
                    lines.push(line);
                }
            } else if !done {
                lines.push(line);
            }
            if !done && answered == processes {
                let _ = attached.send(if traced > 0 {
                    Ok(())
                } else {
                    Err(lines.join("; "))
                });
            }
        }
        if answered < processes {
            let _ = attached.send(Err(lines.join("; ")));
        }
    });
    let result = match seen.recv_timeout(STRACE_LIMIT) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(said)) => Err(io::Error::other(format!(
            "strace could not attach to the proxy: {said} (it needs ptrace permission: root, \
             or kernel.yama.ptrace_scope = 0)"
        ))),
        Err(_) => Err(io::Error::other(format!(
            "strace did not attach to the proxy's processes within {} s",
            STRACE_LIMIT.as_secs()
        ))),
    };
    // The reader ends with strace's stderr; it is not joined here, strace is still running.
    drop(reader);
    result
}

/// Waits for `child` to exit, killing it after `limit`.
fn wait_with_limit(child: &mut std::process::Child, limit: Duration) -> io::Result<()> {
    let start = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "strace did not detach within {} s",
                limit.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The calls in strace's `-c` summary, divided by `connections`.
///
/// A summary row is `% time, seconds, usecs/call, calls, [errors,] syscall`; the calls are the
/// fourth column whether or not the errors column is filled.
fn parse_summary(text: &str, connections: usize) -> io::Result<Count> {
    let mut count = Count::default();
    let mut total = None;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 5 || words[0].parse::<f64>().is_err() {
            continue;
        }
        let (Ok(calls), Some(name)) = (words[3].parse::<f64>(), words.last()) else {
            continue;
        };
        let per = calls / connections as f64;
        if *name == "total" {
            total = Some(per);
        } else {
            count.by_call.insert(name.to_string(), per);
        }
    }
    count.per_connection = total.ok_or_else(|| {
        io::Error::other(format!(
            "strace's summary has no total line: {}",
            text.lines().take(5).collect::<Vec<_>>().join(" / ")
        ))
    })?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_read_per_connection_with_and_without_errors() {
        let text = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 56.02    0.281998          36      7779           epoll_wait
  7.33    0.036882          18      2000      2000 connect
  4.13    0.020767           5      4000      2000 accept4
------ ----------- ----------- --------- --------- ----------------
100.00    0.503399          10     13779      4000 total
";
        let count = parse_summary(text, 2000).unwrap();
        assert_eq!(count.per_connection, 13779.0 / 2000.0);
        assert_eq!(count.by_call["connect"], 1.0);
        assert_eq!(count.by_call["accept4"], 2.0);
        assert_eq!(count.by_call.len(), 3);
        assert!(parse_summary("strace: something else\n", 10)
            .unwrap_err()
            .to_string()
            .contains("no total line"));
    }
}
