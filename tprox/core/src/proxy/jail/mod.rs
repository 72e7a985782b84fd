//! The inner box of the grading sandbox: every process of a submission (its build, each
//! start of its proxy) runs in it. See the `tprox` command's `grade::sandbox` module for the whole design; this
//! part lives with the proxy because starting a proxy is where it is used.
//!
//! Inside, the submission's box is at [`INSIDE`], under the box's own `/tmp`: the output
//! directory that holds the box outside may lie under directories closed to the box's uid
//! (`mktemp -d` makes them 0700), so the box is mounted where its uid can reach it. Paths
//! into the box are translated on the way in.
//!
//! The box sees a minimal root ([`root`]), runs under a seccomp filter ([`seccomp`]), joins
//! the submission's cgroups (its memory and process ceilings, made by the grading tprox), and
//! starts with a session keyring of its own, so that the keys of whoever runs tprox are not
//! in reach. bwrap reads its arguments from a descriptor (`--args`), so that they (the places
//! hidden, the shares) are not on show in the box's `/proc/1/cmdline`.
//!
//! When tprox is root, bwrap runs as root (the mounts need to reach every place, whatever its
//! permissions), and `setpriv` turns the process it starts into the submission's own uid with
//! no capabilities left, before the submission's program runs; bwrap sets no-new-privileges,
//! so no setuid program gives them back. Otherwise bwrap makes a user namespace and the box
//! runs under the teacher's uid.

mod root;
pub mod seccomp;

use std::io::{Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

pub use root::shows as root_shows;

/// Where the box is inside.
pub const INSIDE: &str = "/tmp/box";

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The inner box: how the build and each start of the proxy are wrapped. Made by the parent,
/// used by the child tprox in the outer box.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Jail {
    /// The submission's writable space outside (a tmpfs of the outer box): its scratch copy.
    pub box_dir: PathBuf,
    /// Directories covered by an empty read-only tmpfs.
    hide: Vec<PathBuf>,
    /// Files covered by /dev/null.
    hide_files: Vec<PathBuf>,
    /// Mounted read-only again after the hiding, so a share inside a hidden place is seen.
    share: Vec<PathBuf>,
    /// The uid (and gid) the box runs as, when tprox is root.
    uid: Option<u32>,
    /// RLIMIT_NPROC, under that uid.
    processes: u64,
    /// A descriptor of the machine's network namespace, for a build allowed the network.
    pub host_netns: Option<i32>,
    /// The `cgroup.procs` files of the submission's cgroups: every process of the box joins
    /// them before bwrap starts, so that its ceilings count the build and every proxy start
    /// together. Empty where the machine has no cgroups tprox may use.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    /// Whether the seccomp filter lets io_uring through (`[sandbox] io_uring`).
    #[serde(default)]
    pub io_uring: bool,
}

/// The environment variables a submission's processes get from tprox's: what a build needs
/// to find its tools. Everything else (tokens, keys a CI runner holds) stays out.
const ENV_KEPT: [&str; 10] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TERM",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
];

impl Jail {
    /// A jail for the box at `box_dir`; `uid` when tprox is root.
    pub fn new(box_dir: PathBuf, uid: Option<u32>, processes: u64) -> Jail {
        Jail {
            box_dir,
            hide: Vec::new(),
            hide_files: Vec::new(),
            share: Vec::new(),
            uid,
            processes,
            host_netns: None,
            cgroups: Vec::new(),
            io_uring: false,
        }
    }

    /// The uid the box runs as, when tprox is root.
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }

    /// The same, in these cgroups (their `cgroup.procs` files).
    pub fn in_cgroups(mut self, procs: Vec<PathBuf>) -> Self {
        self.cgroups = procs;
        self
    }

    /// The same, with io_uring allowed or not.
    pub fn with_io_uring(mut self, allowed: bool) -> Self {
        self.io_uring = allowed;
        self
    }

    /// The same, hiding these places and sharing those.
    pub fn hiding(mut self, dirs: Vec<PathBuf>, files: Vec<PathBuf>, share: Vec<PathBuf>) -> Self {
        self.hide = dirs;
        self.hide_files = files;
        self.share = share;
        self
    }

    /// The same, with the machine's network namespace for a build that may use it.
    pub fn with_host_netns(mut self, fd: Option<i32>) -> Self {
        self.host_netns = fd;
        self
    }

    /// A path or argument as the box sees it: the box's own place is [`INSIDE`].
    pub fn inside(&self, text: &str) -> String {
        let outside = path(&self.box_dir);
        match text.strip_prefix(&outside) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{INSIDE}{rest}"),
            _ => text.to_string(),
        }
    }

    /// `bwrap ARGS -- program args…`, as words, with paths into the box translated.
    pub(crate) fn argv(
        &self,
        program: &str,
        args: &[String],
        dir: &Path,
        network: bool,
    ) -> Vec<String> {
        let mut argv: Vec<String> = vec!["bwrap".into()];
        if self.uid.is_none() {
            argv.push("--unshare-user".into());
        }
        argv.extend(
            [
                "--unshare-pid",
                "--unshare-ipc",
                "--unshare-uts",
                "--unshare-cgroup-try",
                "--die-with-parent",
            ]
            .map(String::from),
        );
        argv.extend(root::args());
        argv.extend(
            [
                "--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--size", "67108864",
                "--tmpfs", "/tmp",
            ]
            .map(String::from),
        );
        // Only the outermost of nested hidden places (what is under /tmp is gone already);
        // the shares are mounted into them before they are made read-only (their mount points
        // must be made first).
        let mut hide: Vec<&PathBuf> = self
            .hide
            .iter()
            .filter(|p| !self.hide.iter().any(|q| q != *p && p.starts_with(q)))
            .filter(|p| !p.starts_with("/tmp"))
            .filter(|p| self.shows(p))
            .collect();
        hide.sort();
        hide.dedup();
        // The root is bwrap's own tmpfs: the directories on the way to a hidden place or a
        // share are made there, open to the box's uid (bwrap makes missing ones 0700, for root
        // alone). Those of a share inside a hidden place or /tmp are made in it, after it.
        let mut made: Vec<PathBuf> = Vec::new();
        let mut make_dirs = |argv: &mut Vec<String>, place: &Path, top: &Path| {
            let mut dirs: Vec<&Path> = place
                .ancestors()
                .skip(1)
                .take_while(|a| *a != top && !root::shows(a))
                .collect();
            dirs.reverse();
            for dir in dirs {
                if !made.iter().any(|m| m == dir) {
                    argv.extend(["--perms".into(), "0755".into(), "--dir".into(), path(dir)]);
                    made.push(dir.to_path_buf());
                }
            }
        };
        let in_share = |p: &Path| self.share.iter().any(|s| p.starts_with(s));
        for place in &hide {
            if !in_share(place) {
                make_dirs(&mut argv, place, Path::new("/"));
            }
            argv.extend([
                "--perms".into(),
                "0555".into(),
                "--tmpfs".into(),
                path(place),
            ]);
        }
        for file in self
            .hide_files
            .iter()
            .filter(|f| !f.starts_with("/tmp") && self.shows(f))
        {
            argv.extend(["--ro-bind".into(), "/dev/null".into(), path(file)]);
        }
        for shared in &self.share {
            let top = hide
                .iter()
                .map(|p| p.as_path())
                .chain([Path::new("/tmp")])
                .find(|c| shared.starts_with(c))
                .unwrap_or(Path::new("/"));
            make_dirs(&mut argv, shared, top);
            argv.extend(["--ro-bind".into(), path(shared), path(shared)]);
        }
        for place in &hide {
            argv.extend(["--remount-ro".into(), path(place)]);
        }
        argv.extend(["--bind".into(), path(&self.box_dir), INSIDE.into()]);
        argv.extend(["--chdir".into(), self.inside(&path(dir))]);
        if network {
            // The build's box stays in the machine's network namespace (entered before exec).
            argv.push("--share-net".into());
        }
        argv.push("--".into());
        if let Some(uid) = self.uid {
            let uid = uid.to_string();
            argv.extend(
                [
                    "setpriv",
                    "--reuid",
                    &uid,
                    "--regid",
                    &uid,
                    "--clear-groups",
                    "--bounding-set",
                    "-all",
                    "--inh-caps",
                    "-all",
                    "--",
                ]
                .map(String::from),
            );
        }
        argv.push(self.inside(program));
        argv.extend(args.iter().map(|a| self.inside(a)));
        argv
    }

    /// Whether the box would show `place` but for hiding it: it is in the minimal root, in
    /// a share, or holds a share.
    fn shows(&self, place: &Path) -> bool {
        root::shows(place)
            || self
                .share
                .iter()
                .any(|s| place.starts_with(s) || s.starts_with(place))
    }

    /// A command that runs `program args…` in the box, in `dir` (a path outside; into the
    /// box), with the short environment, as the box's uid. `network`: the machine's network (a
    /// build that `build_network` allows); otherwise the outer box's loopback. Fails only when
    /// the descriptors that carry bwrap's arguments and filters cannot be made.
    pub fn command(
        &self,
        program: &str,
        args: &[String],
        dir: &Path,
        network: bool,
    ) -> std::io::Result<tokio::process::Command> {
        let mut argv = self.argv(program, args, dir, network);
        let [deny, absent] = filters(self.io_uring)?;
        let deny = memfd("tprox-seccomp", deny)?;
        let absent = memfd("tprox-seccomp", absent)?;
        let mut words = vec![
            "--add-seccomp-fd".to_string(),
            deny.as_raw_fd().to_string(),
            "--add-seccomp-fd".into(),
            absent.as_raw_fd().to_string(),
        ];
        // The options go through the descriptor; bwrap wants the command itself on its
        // command line (from the `--` on).
        let command_at = argv
            .iter()
            .position(|w| w == "--")
            .expect("argv has a command");
        let command = argv.split_off(command_at);
        words.extend(argv.drain(1..));
        let mut text = Vec::new();
        for word in &words {
            text.extend(word.as_bytes());
            text.push(0);
        }
        let words = memfd("tprox-bwrap-args", &text)?;
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.arg("--args")
            .arg(words.as_raw_fd().to_string())
            .args(command)
            .env_clear()
            .current_dir("/");
        for (key, value) in std::env::vars_os() {
            let name = key.to_string_lossy();
            if ENV_KEPT.contains(&name.as_ref()) || name.starts_with("TPROX_") {
                cmd.env(&key, value);
            }
        }
        // The teacher's home is not in the box; a build that writes to its home writes to the
        // box's own /tmp.
        cmd.env("HOME", "/tmp");
        let (uid, processes) = (self.uid, self.processes);
        let netns = if network { self.host_netns } else { None };
        let cgroups = self
            .cgroups
            .iter()
            .map(|p| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| std::io::Error::other("a cgroup path with a NUL byte"))?;
        let handed = [deny, absent, words];
        // SAFETY: the closure runs between fork and exec and makes only raw system calls
        // (fcntl, keyctl, open, write, close, setns, setrlimit), which are async-signal-safe;
        // it allocates nothing. It owns the descriptors it hands to bwrap, which live as long
        // as the command.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &handed {
                    if libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                enter_box(uid.is_some(), processes, netns, &cgroups)
            });
        }
        Ok(cmd)
    }

    /// Hands the box over to its uid (the copy of the submission was made by tprox).
    pub fn give_box(&self) -> std::io::Result<()> {
        match self.uid {
            Some(uid) => chown_tree(&self.box_dir, uid),
            None => Ok(()),
        }
    }
}

/// The compiled seccomp filters, made once per process for each io_uring setting.
fn filters(io_uring: bool) -> std::io::Result<[Vec<u8>; 2]> {
    static COMPILED: [OnceLock<Result<[Vec<u8>; 2], String>>; 2] =
        [OnceLock::new(), OnceLock::new()];
    COMPILED[io_uring as usize]
        .get_or_init(|| seccomp::filters(io_uring))
        .clone()
        .map_err(std::io::Error::other)
}

/// An in-memory file holding `bytes`, read from its start, closed on exec unless
/// handed over.
fn memfd(name: &str, bytes: impl AsRef<[u8]>) -> std::io::Result<OwnedFd> {
    let name = std::ffi::CString::new(name).expect("a name without NUL");
    // SAFETY: a system call with a valid C string; the descriptor is owned from here on.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(bytes.as_ref())?;
    file.rewind()?;
    Ok(file.into())
}

/// `keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL)`: a new anonymous session keyring.
const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;

/// In the forked child: a session keyring of its own (the grader's keys stay behind), the
/// submission's cgroups, the machine's network (a build allowed it), and the process limit,
/// which counts once setpriv has turned the box's process into its uid.
fn enter_box(
    own_uid: bool,
    processes: u64,
    netns: Option<i32>,
    cgroups: &[std::ffi::CString],
) -> std::io::Result<()> {
    let check = |rc: libc::c_int| match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    };
    // SAFETY: plain system calls on values owned by this closure.
    unsafe {
        if libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        ) < 0
        {
            return Err(std::io::Error::last_os_error());
        }
        for procs in cgroups {
            // "0": the writing process itself, in both cgroup versions.
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if written != 1 {
                return Err(std::io::Error::last_os_error());
            }
        }
        if let Some(fd) = netns {
            check(libc::setns(fd, libc::CLONE_NEWNET))?;
        }
        if own_uid {
            let limit = libc::rlimit {
                rlim_cur: processes,
                rlim_max: processes,
            };
            check(libc::setrlimit(libc::RLIMIT_NPROC, &limit))?;
        }
    }
    Ok(())
}

fn chown_tree(dir: &Path, uid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(uid))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            chown_tree(&entry.path(), uid)?;
        } else {
            std::os::unix::fs::lchown(entry.path(), Some(uid), Some(uid))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jail(uid: Option<u32>) -> Jail {
        Jail::new(PathBuf::from("/srv/out/.box/ann"), uid, 300).hiding(
            vec![
                PathBuf::from("/srv/class"),
                PathBuf::from("/srv/class/ann"),
                PathBuf::from("/srv/out"),
                PathBuf::from("/tmp/gone-anyway"),
            ],
            vec![PathBuf::from("/usr/local/bin/tprox")],
            vec![
                PathBuf::from("/srv/class/tools"),
                PathBuf::from("/tmp/ci/target/debug/tprox"),
            ],
        )
    }

    #[test]
    fn paths_into_the_box_are_translated_and_others_are_not() {
        let jail = jail(None);
        assert_eq!(jail.inside("/srv/out/.box/ann"), INSIDE);
        assert_eq!(
            jail.inside("/srv/out/.box/ann/./tcpproxy"),
            "/tmp/box/./tcpproxy"
        );
        assert_eq!(jail.inside("/srv/out/.box/anna/x"), "/srv/out/.box/anna/x");
        assert_eq!(jail.inside("--stall-timeout"), "--stall-timeout");
    }

    #[test]
    fn hidden_places_are_covered_before_shares_and_the_box_and_made_read_only_last() {
        let argv = jail(Some(61003)).argv(
            "/srv/out/.box/ann/./tcpproxy",
            &["127.0.0.1".into()],
            Path::new("/srv/out/.box/ann"),
            false,
        );
        let text = argv.join(" ");
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle:?} not in {text}"))
        };
        // The outermost hidden places only; what is under /tmp is gone with /tmp.
        assert!(!text.contains("--tmpfs /srv/class/ann") && !text.contains("gone-anyway"));
        assert!(at("--tmpfs /srv/class ") < at("--ro-bind /srv/class/tools /srv/class/tools"));
        assert!(at("--ro-bind /srv/class/tools") < at("--remount-ro /srv/class "));
        // The output directory is not in the minimal root at all: nothing to cover. The class
        // holds a share, so it is covered, on a directory made open to the box's uid.
        assert!(!text.contains("--tmpfs /srv/out ") && !text.contains("--ro-bind / /"));
        assert!(text.contains("--perms 0755 --dir /srv --perms 0555 --tmpfs /srv/class "));
        assert!(at("--remount-ro /srv/class ") < at("--bind /srv/out/.box/ann /tmp/box"));
        assert!(text.contains("--ro-bind /dev/null /usr/local/bin/tprox"));
        // A share under /tmp: its directories are made there, open to the box's uid.
        assert!(text.contains(
            "--perms 0755 --dir /tmp/ci --perms 0755 --dir /tmp/ci/target \
             --perms 0755 --dir /tmp/ci/target/debug --ro-bind /tmp/ci/target/debug/tprox"
        ));
        assert!(!text.contains("--dir /srv/class "), "{text}");
        assert!(text.contains("--chdir /tmp/box -- setpriv --reuid 61003 --regid 61003"));
        assert!(text.ends_with("-- /tmp/box/./tcpproxy 127.0.0.1"), "{text}");
        // Root's bwrap makes the mounts; no user namespace is asked for.
        assert!(!text.contains("--unshare-user") && !text.contains("--share-net"));
        let unprivileged = jail(None).argv("true", &[], Path::new("/srv/out/.box/ann"), true);
        let text = unprivileged.join(" ");
        assert!(text.contains("--unshare-user") && text.contains("--share-net"));
        assert!(!text.contains("setpriv"));
    }
}
