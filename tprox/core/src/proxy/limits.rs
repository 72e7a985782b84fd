//! Resource limits for untrusted proxies, set in the child between fork and exec.

use tokio::process::Command;

/// Resource limits for each proxy process (setrlimit in the child, before exec). A proxy that
/// reaches one fails the case it was in (allocation fails, accept fails, SIGXCPU), and nothing
/// outside it suffers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// RLIMIT_AS, in bytes. Generous: a thread-per-connection proxy reserves a stack per thread.
    pub address_space: Option<u64>,
    /// RLIMIT_NOFILE.
    pub open_files: Option<u64>,
    /// RLIMIT_CPU, in seconds of CPU time.
    pub cpu_seconds: Option<u64>,
}

impl Limits {
    /// Applies the limits to the calling process. Runs in the forked child, so it only calls
    /// setrlimit (async-signal-safe).
    fn apply(&self) -> std::io::Result<()> {
        use nix::sys::resource::{setrlimit, Resource};
        let pairs = [
            (Resource::RLIMIT_AS, self.address_space),
            (Resource::RLIMIT_NOFILE, self.open_files),
            (Resource::RLIMIT_CPU, self.cpu_seconds),
        ];
        for (resource, limit) in pairs {
            if let Some(limit) = limit {
                setrlimit(resource, limit, limit).map_err(std::io::Error::from)?;
            }
        }
        Ok(())
    }

    /// Arranges for `cmd`'s child to run under these limits.
    pub fn install(&self, cmd: &mut Command) {
        if *self == Limits::default() {
            return;
        }
        let limits = *self;
        // SAFETY: the closure runs between fork and exec and only calls setrlimit, which is
        // async-signal-safe; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || limits.apply());
        }
    }
}
