//! Helpers shared by the integration tests.

use std::path::Path;
use std::time::{Duration, Instant};

/// Waits until none of the processes listed (one pid per line) in `pidfile` exists any more.
pub fn assert_all_gone(pidfile: &Path) {
    let pids: Vec<u32> = std::fs::read_to_string(pidfile)
        .expect("the proxy wrapper wrote its pid")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert!(!pids.is_empty(), "no pid was recorded");
    let deadline = Instant::now() + Duration::from_secs(5);
    for pid in pids {
        loop {
            let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Gone, or a zombie waiting for init to reap it: either way no longer running.
            let running = status
                .split_whitespace()
                .nth(2)
                .is_some_and(|state| state != "Z");
            if !running {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "process {pid} started for the proxy is still running"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
