//! The system calls a box may not make, as a seccomp filter that bubblewrap installs right
//! before it starts the box's program (`bwrap --seccomp FD`).
//!
//! Modelled on the default profiles of container runtimes (Docker's and Podman's), which allow
//! what ordinary programs need and deny what reaches past the process into the kernel's shared
//! state. A build or a proxy needs none of the calls below; a hostile one uses them to break
//! out or to leave something behind for the next student. Each denied call fails with `EPERM`,
//! as it would for an unprivileged process on a locked-down machine, so a program that probes
//! for a feature falls back rather than dies.
//!
//! | calls | why they are denied |
//! | --- | --- |
//! | `keyctl`, `add_key`, `request_key` | kernel keyrings are not namespaced: a box could read the grader's keys or plant keys that outlive it in its uid's keyring |
//! | `unshare`, `setns`; `clone` with a namespace flag; `clone3` (`ENOSYS`, so the C library falls back to `clone`, whose flags the filter can read) | new user namespaces give a process capabilities over fresh namespaces, the kernel's widest attack surface; the box's namespaces are made for it |
//! | `mount`, `umount2`, `pivot_root`, `chroot`, `move_mount`, `open_tree`, `fsopen`, `fsconfig`, `fsmount`, `fspick`, `mount_setattr` | the box's view of the files is made once, by bubblewrap |
//! | `bpf`, `perf_event_open`, `userfaultfd` | kernel programs, performance counters and page-fault handlers: frequent kernel exploit paths, and side channels on the machine's other processes |
//! | `init_module`, `finit_module`, `delete_module`, `kexec_load`, `kexec_file_load`, `reboot`, `swapon`, `swapoff`, `acct`, `quotactl`, `syslog` | the machine's own administration |
//! | `open_by_handle_at`, `name_to_handle_at` | open files by handle, past the mounts that hide them |
//! | `io_uring_setup`, `io_uring_enter`, `io_uring_register` (unless `[sandbox] io_uring = true`) | a second system call interface that seccomp cannot inspect, and a frequent source of kernel bugs |
//!
//! `ptrace` stays allowed: the box's own processes are in their own pid namespace under one
//! uid, and debugging one's own program is legitimate.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// The namespace flags of `clone` that a box may not use.
const NAMESPACE_FLAGS: [libc::c_int; 7] = [
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
];

/// The calls denied outright.
fn denied(io_uring: bool) -> Vec<libc::c_long> {
    let mut calls = vec![
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_syslog,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
    ];
    if !io_uring {
        calls.extend([
            libc::SYS_io_uring_setup,
            libc::SYS_io_uring_enter,
            libc::SYS_io_uring_register,
        ]);
    }
    calls
}

/// The same call made through x86-64's x32 interface (the number with this bit set) reaches
/// the same kernel code; where the kernel has x32, the filter must deny both numbers.
#[cfg(target_arch = "x86_64")]
const X32: libc::c_long = 0x4000_0000;

fn arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|_| format!("no seccomp filter for {} yet", std::env::consts::ARCH))
}

/// Every number a call may be made by on this machine.
fn numbers(call: libc::c_long) -> Vec<i64> {
    #[cfg(target_arch = "x86_64")]
    return vec![call, call | X32];
    #[cfg(not(target_arch = "x86_64"))]
    return vec![call];
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    action: SeccompAction,
) -> Result<Vec<u8>, String> {
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, action, arch()?)
        .map_err(|e| format!("the seccomp filter: {e}"))?;
    let program = BpfProgram::try_from(filter).map_err(|e| format!("the seccomp filter: {e}"))?;
    // The kernel's `struct sock_filter`, which bwrap reads as it is.
    Ok(program
        .iter()
        .flat_map(|op| {
            let mut bytes = Vec::with_capacity(8);
            bytes.extend(op.code.to_ne_bytes());
            bytes.extend([op.jt, op.jf]);
            bytes.extend(op.k.to_ne_bytes());
            bytes
        })
        .collect())
}

/// The filters a box runs under, compiled: the denials (`EPERM`), and `clone3` made to look
/// absent (`ENOSYS`). bwrap takes each with `--add-seccomp-fd`.
pub fn filters(io_uring: bool) -> Result<[Vec<u8>; 2], String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for call in denied(io_uring) {
        for number in numbers(call) {
            rules.insert(number, Vec::new());
        }
    }
    // clone's flags are its first argument on every architecture tprox builds for.
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let flag = flag as u64;
            SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .and_then(|condition| SeccompRule::new(vec![condition]))
            .map_err(|e| format!("the seccomp filter: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for number in numbers(libc::SYS_clone) {
        rules.insert(number, clone_rules.clone());
    }
    let deny = compile(rules, SeccompAction::Errno(libc::EPERM as u32))?;
    let clone3 = numbers(libc::SYS_clone3)
        .into_iter()
        .map(|n| (n, Vec::new()))
        .collect();
    let absent = compile(clone3, SeccompAction::Errno(libc::ENOSYS as u32))?;
    Ok([deny, absent])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile_to_whole_instructions_for_this_machine() {
        let [deny, absent] = filters(false).unwrap();
        assert_eq!(deny.len() % 8, 0);
        assert_eq!(absent.len() % 8, 0);
        // Every denied call and each namespace flag costs instructions: io_uring allowed is
        // a shorter program.
        let [allowed, _] = filters(true).unwrap();
        assert!(
            allowed.len() < deny.len(),
            "{} {}",
            allowed.len(),
            deny.len()
        );
    }
}
