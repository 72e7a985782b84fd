//! The inner box of the grading sandbox: every process of a submission (its build, each
//! start of its proxy) runs in it. See the `tprox` command's `grade::sandbox` module for the whole design; this
//! part lives with the proxy because starting a proxy is where it is used.
//!
//! Inside, the submission's box is at [`INSIDE`], under the box's own `/tmp`: the output
//! directory that holds the box outside may lie under directories closed to the box's uid
//! (`mktemp -d` makes them 0700), so the box is mounted where its uid can reach it. Paths
//! into the box are translated on the way in.
//!
//! When tprox is root, bwrap runs as root (the mounts need to reach every place, whatever its
//! permissions), and `setpriv` turns the process it starts into the submission's own uid with
//! no capabilities left, before the submission's program runs; bwrap sets no-new-privileges,
//! so no setuid program gives them back. Otherwise bwrap makes a user namespace and the box
//! runs under the teacher's uid.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
        }
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
                "--ro-bind",
                "/",
                "/",
                "--dev",
                "/dev",
                "--proc",
                "/proc",
                "--perms",
                "1777",
                "--size",
                "67108864",
                "--tmpfs",
                "/tmp",
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
            .collect();
        hide.sort();
        hide.dedup();
        for place in &hide {
            argv.extend([
                "--perms".into(),
                "0555".into(),
                "--tmpfs".into(),
                path(place),
            ]);
        }
        for file in self.hide_files.iter().filter(|f| !f.starts_with("/tmp")) {
            argv.extend(["--ro-bind".into(), "/dev/null".into(), path(file)]);
        }
        // A share inside /tmp or a hidden place needs its directories made there first, open to
        // the box's uid (bwrap makes missing ones 0700, for root alone).
        let covered: Vec<&Path> = hide
            .iter()
            .map(|p| p.as_path())
            .chain([Path::new("/tmp")])
            .collect();
        let mut made: Vec<PathBuf> = Vec::new();
        for shared in &self.share {
            if let Some(top) = covered.iter().find(|c| shared.starts_with(c)) {
                let mut dirs: Vec<&Path> = shared
                    .ancestors()
                    .skip(1)
                    .take_while(|a| a != top)
                    .collect();
                dirs.reverse();
                for dir in dirs {
                    if !made.iter().any(|m| m == dir) {
                        argv.extend(["--perms".into(), "0755".into(), "--dir".into(), path(dir)]);
                        made.push(dir.to_path_buf());
                    }
                }
            }
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

    /// A command that runs `program args…` in the box, in `dir` (a path outside; into the
    /// box), with the short environment, as the box's uid. `network`: the machine's network (a
    /// build that `build_network` allows); otherwise the outer box's loopback.
    pub fn command(
        &self,
        program: &str,
        args: &[String],
        dir: &Path,
        network: bool,
    ) -> tokio::process::Command {
        let argv = self.argv(program, args, dir, network);
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..]).env_clear().current_dir("/");
        for (key, value) in std::env::vars_os() {
            let name = key.to_string_lossy();
            if ENV_KEPT.contains(&name.as_ref()) || name.starts_with("TPROX_") {
                cmd.env(&key, value);
            }
        }
        let (uid, processes) = (self.uid, self.processes);
        let netns = if network { self.host_netns } else { None };
        // SAFETY: the closure runs between fork and exec and makes only raw system calls
        // (setns, setrlimit), which are async-signal-safe; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || enter_box(uid.is_some(), processes, netns));
        }
        cmd
    }

    /// Hands the box over to its uid (the copy of the submission was made by tprox).
    pub fn give_box(&self) -> std::io::Result<()> {
        match self.uid {
            Some(uid) => chown_tree(&self.box_dir, uid),
            None => Ok(()),
        }
    }
}

/// In the forked child: join the machine's network (a build allowed it), and take the
/// process limit, which counts once setpriv has turned the box's process into its uid.
fn enter_box(own_uid: bool, processes: u64, netns: Option<i32>) -> std::io::Result<()> {
    let check = |rc: libc::c_int| match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    };
    // SAFETY: plain system calls on values owned by this closure.
    unsafe {
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
        assert!(at("--tmpfs /srv/out ") < at("--bind /srv/out/.box/ann /tmp/box"));
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
