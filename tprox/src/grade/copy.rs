//! The scratch copy of a submission, made so that the submission cannot steer it.
//!
//! tprox copies as root when it grades as root, from a directory that its owner may still be
//! changing (grading in place on a shared server). So nothing is decided from a name and then
//! done to the name again: every entry is opened relative to its directory's open descriptor
//! in one lookup that follows nothing (`openat` with `O_PATH | O_NOFOLLOW`), and its type,
//! owner, link target and content are all read from that descriptor. An entry swapped for a
//! link at any moment is found to be one or the other, and copied as what it was when it was
//! opened; the copy never reads through a link. Links stay links in
//! the box, where they resolve in the box's own view of the machine.
//!
//! A file whose owner is not the submission's owner, and that is either linked from elsewhere
//! too (a hard link) or closed to other users, is not copied: it can only have come from a
//! hard link to a file the submitter could not read, and copying it would hand it over. The
//! row says which.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag, AT_FDCWD};
use nix::sys::stat::{fstat, FileStat, Mode, SFlag};

/// Copies the directory tree at `from` into the existing directory `to`; `.git` is left out.
/// Returns a line for each file refused.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<Vec<String>> {
    let root = openat(
        AT_FDCWD,
        from,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let owner = fstat(&root)?.st_uid;
    let mut refused = Vec::new();
    copy_dir(root, Path::new(""), to, owner, &mut refused)?;
    Ok(refused)
}

fn copy_dir(
    dir: OwnedFd,
    inside: &Path,
    to: &Path,
    owner: u32,
    refused: &mut Vec<String>,
) -> std::io::Result<()> {
    // The listing of the open directory itself, not of whatever its name now points to.
    let listing = std::fs::read_dir(format!("/proc/self/fd/{}", raw(&dir)))?;
    for entry in listing {
        let name = entry?.file_name();
        let target = to.join(&name);
        let shown = inside.join(&name);
        // The entry itself, whatever it is now, in one lookup that follows nothing: from here
        // on, its type and content come from this descriptor, not from its name.
        let entry = match openat(
            &dir,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            // Gone since the listing: nothing to copy.
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        let stat = fstat(&entry)?;
        match SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFLNK => {
                let link = readlinkat(&entry, "")?;
                std::os::unix::fs::symlink(link, &target)?;
            }
            SFlag::S_IFDIR if name.as_bytes() == b".git" => {}
            SFlag::S_IFDIR => {
                let opened = reopen(&entry, OFlag::O_DIRECTORY)?;
                std::fs::create_dir(&target)?;
                copy_dir(opened, &shown, &target, owner, refused)?;
            }
            SFlag::S_IFREG => match foreign(&stat, owner) {
                Some(why) => refused.push(format!("{} not copied: {why}", shown.display())),
                None => {
                    let mut file = File::from(reopen(&entry, OFlag::empty())?);
                    let mut copy = File::create(&target)?;
                    std::io::copy(&mut file, &mut copy)?;
                    let mode = stat.st_mode & 0o777;
                    std::fs::set_permissions(
                        &target,
                        std::os::unix::fs::PermissionsExt::from_mode(mode),
                    )?;
                }
            },
            // Devices, pipes, sockets: a submission has no use for them.
            _ => {}
        }
    }
    Ok(())
}

/// Why a regular file is not the submitter's to hand over, if it is not.
fn foreign(stat: &FileStat, owner: u32) -> Option<&'static str> {
    if stat.st_uid == owner {
        return None;
    }
    if stat.st_nlink > 1 {
        Some("a hard link to a file its submitter does not own")
    } else if stat.st_mode & 0o004 == 0 {
        Some("a file its submitter does not own and other users may not read")
    } else {
        None
    }
}

/// The file `entry` (an `O_PATH` descriptor) refers to, opened for reading: through its
/// `/proc/self/fd` link, which names the very file the descriptor holds, never a path again.
fn reopen(entry: &OwnedFd, flags: OFlag) -> std::io::Result<OwnedFd> {
    let link = format!("/proc/self/fd/{}", raw(entry));
    Ok(openat(
        AT_FDCWD,
        link.as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | flags,
        Mode::empty(),
    )?)
}

fn raw(fd: &impl AsFd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_fd().as_raw_fd()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_stay_links_and_pipes_git_and_modes_are_handled() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        std::fs::create_dir_all(from.join("src/.git")).unwrap();
        std::fs::create_dir_all(&to).unwrap();
        std::fs::write(from.join("src/main.c"), "int main;").unwrap();
        std::fs::write(from.join("src/.git/HEAD"), "ref").unwrap();
        std::fs::write(from.join("run.sh"), "#!/bin/sh").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(from.join("run.sh"), PermissionsExt::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", from.join("away")).unwrap();
        nix::unistd::mkfifo(&from.join("pipe"), Mode::from_bits_truncate(0o644)).unwrap();
        let refused = copy_tree(&from, &to).unwrap();
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(
            std::fs::read_to_string(to.join("src/main.c")).unwrap(),
            "int main;"
        );
        assert!(!to.join("src/.git").exists());
        assert_eq!(
            std::fs::read_link(to.join("away")).unwrap(),
            Path::new("/etc/hostname")
        );
        // Executable still; setuid never.
        let mode = std::fs::metadata(to.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
        assert!(
            !to.join("pipe").exists(),
            "a pipe was copied (or the copy hung on it)"
        );
    }

    #[test]
    fn a_file_of_someone_else_linked_or_closed_is_foreign() {
        let stat = |uid: u32, nlink: u64, mode: u32| {
            // SAFETY: a plain C struct; every field a number.
            let mut stat: FileStat = unsafe { std::mem::zeroed() };
            stat.st_uid = uid;
            stat.st_nlink = nlink as _;
            stat.st_mode = libc::S_IFREG | mode;
            stat
        };
        let student = 61999;
        assert_eq!(foreign(&stat(student, 2, 0o600), student), None);
        assert_eq!(foreign(&stat(0, 1, 0o644), student), None);
        assert!(foreign(&stat(0, 2, 0o644), student)
            .unwrap()
            .contains("hard link"));
        assert!(foreign(&stat(0, 1, 0o600), student)
            .unwrap()
            .contains("may not read"));
    }
}
