//! The box's view of the machine's files: only what builds and proxies need, read-only.
//!
//! Not the machine's `/` with a few places covered: a hidden place that nobody thought of
//! (`/run` with D-Bus and database sockets, `/var/tmp`, `/home`, `/root`, the host's
//! `/dev/shm`, `/sys`) would stay in view, and a read-only mount does not stop `connect()` to
//! a socket that is a file. So the box gets `/usr` (and `/bin`, `/sbin`, `/lib*` as the
//! machine has them: links into `/usr` on a merged-usr system, directories otherwise), the
//! few files of `/etc` that programs read to start (users and groups, the dynamic linker's
//! cache, name resolution, `alternatives` for the compilers Debian links there, certificates),
//! and what the grading file shares. `/proc`, `/dev` and `/tmp` are the box's own, made by
//! bubblewrap.

use std::path::Path;

/// The top-level places shown as the machine has them: a link stays a link, a directory is
/// mounted read-only.
const SYSTEM: [&str; 7] = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// What of `/etc` a build or a proxy reads.
const ETC: [&str; 20] = [
    "passwd",
    "group",
    "hosts",
    "host.conf",
    "nsswitch.conf",
    "resolv.conf",
    "gai.conf",
    "protocols",
    "services",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "ssl",
    "ca-certificates",
    "localtime",
    "timezone",
    "mime.types",
    "os-release",
    "debian_version",
];

/// bwrap's arguments that make the minimal root.
pub fn args() -> Vec<String> {
    let mut args = Vec::new();
    for name in SYSTEM {
        let place = Path::new("/").join(name);
        let place = place.to_string_lossy().into_owned();
        match std::fs::read_link(&place) {
            Ok(target) => args.extend([
                "--symlink".into(),
                target.to_string_lossy().into_owned(),
                place,
            ]),
            Err(_) if Path::new(&place).is_dir() => {
                args.extend(["--ro-bind".into(), place.clone(), place])
            }
            Err(_) => {}
        }
    }
    for name in ETC {
        let place = format!("/etc/{name}");
        args.extend(["--ro-bind-try".into(), place.clone(), place]);
    }
    args
}

/// Whether `place` is in the box's view of the machine without being shared.
pub fn shows(place: &Path) -> bool {
    SYSTEM
        .iter()
        .any(|name| place.starts_with(Path::new("/").join(name)))
        || ETC
            .iter()
            .any(|name| place.starts_with(Path::new("/etc").join(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_shows_the_system_and_hides_the_rest() {
        let text = args().join(" ");
        assert!(text.contains("/usr"), "{text}");
        assert!(
            text.contains("--ro-bind-try /etc/passwd /etc/passwd"),
            "{text}"
        );
        for hidden in ["/run", "/var", "/home", "/root", "/sys", "/etc/shadow"] {
            assert!(!text.contains(&format!(" {hidden} ")), "{hidden} in {text}");
            assert!(!shows(Path::new(hidden)), "{hidden}");
        }
        assert!(shows(Path::new("/usr/bin/cc")) && shows(Path::new("/etc/ssl/certs")));
    }
}
