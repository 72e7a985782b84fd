//! Which of the grading file's limits a submission ran into, for its gradebook row: a teacher
//! reading "0 points" should see "its writable space was full" rather than guess.
//!
//! A limit shows itself either in the box (the writable space is full) or in what the
//! submission's processes printed when a system call failed (the messages of the C library,
//! the shell and Rust's runtime, which is how a student would see it too).

use super::config::Grading;
use crate::proxy::jail::Jail;

/// How the build's log says that the build printed more than is kept.
pub const BUILD_FLOOD: &str = "output: the build printed ";

/// The writable space's limit, when the box is (nearly) full.
pub fn disk(jail: &Jail, grading: &Grading) -> Option<String> {
    let stat = nix::sys::statvfs::statvfs(&jail.box_dir).ok()?;
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    (free < 1024 * 1024).then(|| disk_text(grading))
}

fn disk_text(grading: &Grading) -> String {
    format!(
        "writable space: full ([sandbox] disk_mib = {})",
        grading.sandbox.disk_mib
    )
}

/// The limits that the build's log and the proxies' outputs name.
pub fn named(grading: &Grading, build_log: &str, outputs: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let texts = std::iter::once((build_log, true)).chain(outputs.iter().map(|o| (*o, false)));
    for (text, build) in texts {
        for (signs, limit) in signs(grading, build) {
            if signs.iter().any(|sign| text.contains(sign)) && !found.contains(&limit) {
                found.push(limit);
            }
        }
    }
    if let Some(line) = build_log.lines().find(|l| l.starts_with(BUILD_FLOOD)) {
        found.push(line.to_string());
    }
    if build_log.contains("the build did not finish within") {
        found.push(format!(
            "build time: the build was stopped ([build] timeout = {})",
            grading
                .build
                .as_ref()
                .map_or(String::new(), |b| humantime::format_duration(b.timeout)
                    .to_string())
        ));
    }
    found
}

/// The messages that betray each limit, in the build's log (`build`) or a proxy's output.
fn signs(grading: &Grading, build: bool) -> Vec<(&'static [&'static str], String)> {
    let (memory_key, memory) = match build {
        true => (
            "build_address_space_mib",
            grading.build_limits.address_space,
        ),
        false => ("address_space_mib", grading.limits.address_space),
    };
    vec![
        (
            &["No space left on device", "Disk quota exceeded"],
            disk_text(grading),
        ),
        (
            &[
                "Cannot fork",
                "fork: Resource temporarily unavailable",
                "fork: retry",
                "can't fork",
            ],
            format!(
                "processes: fork failed ([sandbox] processes = {})",
                grading.sandbox.processes
            ),
        ),
        (
            &[
                "memory allocation of",
                "Cannot allocate memory",
                "std::bad_alloc",
                "out of memory",
                "memory exhausted",
            ],
            format!(
                "memory: an allocation failed ([limits] {memory_key} = {})",
                memory.unwrap_or(0) / (1024 * 1024)
            ),
        ),
        (
            &["Read-only file system"],
            "files: it wrote outside its writable space (read-only there)".into(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_their_limits_once_each() {
        let grading = super::super::config::tests::example();
        let found = named(
            &grading,
            "sh: 1: Cannot fork\nsh: 1: Cannot fork\n",
            &["memory allocation of 1048576 bytes failed", "fine"],
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("processes"), "{found:?}");
        assert!(found[1].starts_with("memory"), "{found:?}");
        assert!(named(&grading, "build succeeded", &["listening"]).is_empty());
        let stopped = named(
            &grading,
            "the build did not finish within 10m and was stopped",
            &[],
        );
        assert_eq!(stopped.len(), 1);
        assert!(stopped[0].starts_with("build time"), "{stopped:?}");
        let flood = format!("{BUILD_FLOOD}200.0 MB; only its last lines are kept");
        assert_eq!(named(&grading, &format!("xxx\n{flood}\n"), &[]), [flood]);
    }
}
