//! A container's PID and mount namespaces, and the two small processes that keep its
//! signals and exit status honest. Everything here runs in the forked child before exec,
//! so it makes only async-signal-safe system calls and never allocates.
//!
//! ```text
//! agent ──fork──► C (host PID ns, the agent's child: its pidfd is what the agent waits on)
//!                 │ unshare(PID | mount), fork
//!                 └► G (PID 1 of the new namespace): private mounts, /proc of the new
//!                    │ namespace, cgroup filesystems read-only; fork
//!                    └► P (PID 2): drops CAP_SYS_ADMIN, returns to exec the command
//! ```
//!
//! Why three: the init of a PID namespace ignores every signal it has no handler for, even
//! SIGTERM from the agent, so the command must not be PID 1. G is that init: it forwards
//! SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to P, reaps orphans, and exits
//! when P does (the kernel then kills whatever is left in the namespace). C stays in the
//! agent's namespace so that the agent supervises it through a pidfd as before: it forwards
//! the same signals to G and ends exactly as P ended, with P's exit code or by P's signal
//! (G tells it which through a pipe), so the lifecycle's outcomes (exit code, killed,
//! OOM) are unchanged.
//!
//! A failure before the command can start (unshare, mounts) reaches the agent as a spawn
//! error naming the step: C returns it from `pre_exec`, and std reports it.

use std::ffi::CString;
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};

/// Errors of the set-up steps travel as `errno | (STEP_BASE + step) << 16`, beside the
/// cgroup join errors of spawn.rs (which use small indices in the same bits).
pub const STEP_BASE: i32 = 0x40;
const STEP_SHIFT: u32 = 16;

/// The set-up steps, for error messages; indexed by the step number.
pub const STEPS: [&str; 8] = [
    "unshare the PID and mount namespaces",
    "create the set-up pipes",
    "fork the namespace's init",
    "make the mounts private",
    "mount /proc for the new PID namespace",
    "remount a cgroup filesystem read-only",
    "drop CAP_SYS_ADMIN",
    "create the exit record",
];

/// The signals C and G pass on.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// CAP_SYS_ADMIN (linux/capability.h), which libc does not export.
const CAP_SYS_ADMIN: libc::c_ulong = 21;

/// Where this process forwards signals to (G for C, P for G); 0 until known.
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, signal) };
    }
}

fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

pub(super) fn step_error(step: i32, errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno | ((STEP_BASE + step) << STEP_SHIFT))
}

/// The step and errno of an error made by this module, if it is one.
pub fn decode(code: i32) -> Option<(&'static str, i32)> {
    let step = (code >> STEP_SHIFT) - STEP_BASE;
    let name = usize::try_from(step).ok().and_then(|s| STEPS.get(s))?;
    Some((name, code & ((1 << STEP_SHIFT) - 1)))
}

/// Installs `forward` for the forwarded signals.
///
/// # Safety
/// Only in a single-threaded child after fork.
unsafe fn install_forwarding(to: libc::pid_t) {
    FORWARD_TO.store(to, Ordering::Relaxed);
    for signal in FORWARDED {
        // SAFETY: a zeroed sigaction is valid; the fields set below make it a handler.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = forward as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: sigemptyset and sigaction on valid pointers are async-signal-safe.
        unsafe {
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Closes every descriptor from 3 up except those in `keep` (negative entries keep nothing).
///
/// # Safety
/// Only in a child after fork that no longer needs them.
unsafe fn close_all_except(mut keep: [libc::c_int; 2]) {
    keep.sort_unstable();
    let mut from: libc::c_int = 3;
    for fd in keep {
        if fd < from {
            continue;
        }
        if fd > from {
            // SAFETY: close_range only closes descriptors.
            unsafe { libc::syscall(libc::SYS_close_range, from as u32, (fd - 1) as u32, 0u32) };
        }
        from = fd + 1;
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, from as u32, u32::MAX, 0u32) };
}

/// Formats an exit record (`exit CODE` or `signal NUMBER`, one line) into `buf` without
/// allocating; returns its length.
fn format_exit(buf: &mut [u8; 32], signal: Option<libc::c_int>, code: libc::c_int) -> usize {
    let (prefix, value): (&[u8], libc::c_int) = match signal {
        Some(signal) => (b"signal ", signal),
        None => (b"exit ", code),
    };
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut len = prefix.len();
    let mut digits = [0u8; 12];
    let mut n = value.unsigned_abs();
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if value < 0 {
        buf[len] = b'-';
        len += 1;
    }
    for i in (0..count).rev() {
        buf[len] = digits[i];
        len += 1;
    }
    buf[len] = b'\n';
    len + 1
}

/// Writes how the command ended to the exit record `fd` (nothing when `fd` is negative).
///
/// # Safety
/// Only in a child after fork; `fd` is open or negative.
unsafe fn record_exit(fd: libc::c_int, status: libc::c_int, signal: Option<libc::c_int>) {
    if fd < 0 {
        return;
    }
    let signal = signal.or_else(|| libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)));
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let mut buf = [0u8; 32];
    let len = format_exit(&mut buf, signal, code);
    // SAFETY: write and close are async-signal-safe; the buffer is ours.
    unsafe {
        libc::write(fd, buf.as_ptr().cast(), len);
        libc::close(fd);
    }
}

/// Waits for `pid`, retrying on EINTR; returns its wait status.
fn wait_for(pid: libc::pid_t) -> libc::c_int {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes to the status we own.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid || (r < 0 && errno() != libc::EINTR) {
            return status;
        }
    }
}

/// Ends this process the way a process ended with wait status `status`: the same exit
/// code, or death by the same signal.
///
/// # Safety
/// Only in a child after fork.
unsafe fn end_like(status: libc::c_int, signal: Option<libc::c_int>) -> ! {
    let signal = signal.or_else(|| libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)));
    if let Some(signal) = signal {
        // SAFETY: all async-signal-safe; no core file for this stand-in process.
        unsafe {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            libc::signal(signal, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::kill(libc::getpid(), signal);
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + signal.unwrap_or(0)
    };
    // SAFETY: _exit is async-signal-safe and does not run atexit handlers.
    unsafe { libc::_exit(code) }
}

/// G, the namespace's init: set up the mounts, start P, forward signals, reap, and exit
/// when P does. Returns only in P, which then execs the command.
///
/// # Safety
/// Only in the single-threaded child G right after fork.
unsafe fn init(
    read_only: &[CString],
    setup_w: libc::c_int,
    status_w: libc::c_int,
) -> io::Result<()> {
    let fail = |step: i32| -> ! {
        let code = errno() | ((STEP_BASE + step) << STEP_SHIFT);
        let bytes = code.to_ne_bytes();
        // SAFETY: write and _exit are async-signal-safe.
        unsafe {
            libc::write(setup_w, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        }
    };
    let none: *const libc::c_char = std::ptr::null();
    // SAFETY: mount(2) with valid NUL-terminated strings or nulls.
    unsafe {
        if libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            fail(3);
        }
        if libc::mount(
            c"proc".as_ptr(),
            c"/proc".as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        ) != 0
        {
            fail(4);
        }
        for path in read_only {
            let flags = libc::MS_REMOUNT
                | libc::MS_BIND
                | libc::MS_RDONLY
                | libc::MS_NOSUID
                | libc::MS_NODEV
                | libc::MS_NOEXEC;
            if libc::mount(none, path.as_ptr(), none, flags, std::ptr::null()) != 0 {
                fail(5);
            }
        }
    }
    // SAFETY: fork in a single-threaded process.
    let p = unsafe { libc::fork() };
    if p < 0 {
        fail(2);
    }
    if p == 0 {
        // P: keep only what exec needs. Without CAP_SYS_ADMIN a root task can neither
        // remount the cgroup filesystems writable nor leave its namespaces' mounts.
        // SAFETY: close and prctl are async-signal-safe.
        unsafe {
            libc::close(setup_w);
            libc::close(status_w);
            if libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0 {
                // std reports it to the agent as the spawn's error; the task never runs.
                return Err(step_error(6, errno()));
            }
        }
        return Ok(());
    }
    // G: set-up done (C sees end-of-file), then forward, reap, and report P's end.
    // SAFETY: single-threaded child; async-signal-safe calls only.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"fleet-init".as_ptr(), 0, 0, 0);
        libc::close(setup_w);
        install_forwarding(p);
        close_all_except([status_w, -1]);
        loop {
            let mut status = 0;
            let pid = libc::waitpid(-1, &mut status, 0);
            if pid == p {
                if libc::WIFSIGNALED(status) {
                    let signal = libc::WTERMSIG(status) as u8;
                    libc::write(status_w, (&raw const signal).cast(), 1);
                    libc::_exit(0);
                }
                libc::_exit(libc::WEXITSTATUS(status));
            }
            if pid < 0 && errno() != libc::EINTR {
                libc::_exit(127);
            }
        }
    }
}

/// Runs in the forked child C, after it joined its cgroups and started its session:
/// enters the new namespaces and returns only in P, the process that execs the command.
/// `read_only` are the mount points of the cgroup filesystems, remounted read-only in the
/// container's mount namespace. When P ends, C writes how to `exit_record` (an open,
/// close-on-exec descriptor, or -1 for none) before ending the same way.
///
/// # Safety
/// Only between fork and exec, in the child.
pub unsafe fn enter(read_only: &[CString], exit_record: libc::c_int) -> io::Result<()> {
    // SAFETY: every call below is async-signal-safe; the child is single-threaded.
    unsafe {
        if libc::unshare(libc::CLONE_NEWPID | libc::CLONE_NEWNS) != 0 {
            return Err(step_error(0, errno()));
        }
        let mut setup = [0; 2];
        let mut status = [0; 2];
        if libc::pipe2(setup.as_mut_ptr(), libc::O_CLOEXEC) != 0
            || libc::pipe2(status.as_mut_ptr(), libc::O_CLOEXEC) != 0
        {
            return Err(step_error(1, errno()));
        }
        let g = libc::fork();
        if g < 0 {
            return Err(step_error(2, errno()));
        }
        if g == 0 {
            libc::close(setup[0]);
            libc::close(status[0]);
            if exit_record >= 0 {
                libc::close(exit_record);
            }
            return init(read_only, setup[1], status[1]);
        }
        // C.
        libc::close(setup[1]);
        libc::close(status[1]);
        let mut code = [0u8; 4];
        let got = libc::read(setup[0], code.as_mut_ptr().cast(), code.len());
        libc::close(setup[0]);
        if got == 4 {
            wait_for(g);
            return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(code)));
        }
        // P has started (or exec'd already): from here on C only mirrors it. Closing the
        // rest (std's own exec-error pipe among them) lets the agent's spawn return. Its
        // name says what it is in `ps` and `top` (it is a copy of the agent otherwise).
        libc::prctl(libc::PR_SET_NAME, c"fleet-task".as_ptr(), 0, 0, 0);
        install_forwarding(g);
        close_all_except([status[0], exit_record]);
        let waited = wait_for(g);
        let mut signal = 0u8;
        let from_pipe = libc::read(status[0], (&raw mut signal).cast(), 1);
        let signal = (from_pipe == 1 && signal > 0).then_some(libc::c_int::from(signal));
        record_exit(exit_record, waited, signal);
        end_like(waited, signal)
    }
}

/// The mount points of the cgroup filesystems (and the tmpfs that holds them on v1 and
/// hybrid hosts), from /proc/self/mountinfo.
pub fn cgroup_mounts() -> io::Result<Vec<CString>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut mounts = Vec::new();
    for line in text.lines() {
        // "... mount-point options - fstype source super-options"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = right.split_whitespace().next().unwrap_or("");
        let Some(point) = left.split_whitespace().nth(4) else {
            continue;
        };
        let under = point == "/sys/fs/cgroup" || point.starts_with("/sys/fs/cgroup/");
        if under && (fstype == "cgroup" || fstype == "cgroup2" || fstype == "tmpfs") {
            let point = point.replace("\\040", " ");
            mounts.push(CString::new(point).map_err(io::Error::other)?);
        }
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_records_format_as_they_parse() {
        let mut buf = [0u8; 32];
        let n = format_exit(&mut buf, None, 0);
        assert_eq!(&buf[..n], b"exit 0\n");
        let n = format_exit(&mut buf, None, 255);
        assert_eq!(&buf[..n], b"exit 255\n");
        let n = format_exit(&mut buf, Some(9), 0);
        assert_eq!(&buf[..n], b"signal 9\n");
        let n = format_exit(&mut buf, None, -1);
        assert_eq!(&buf[..n], b"exit -1\n");
    }

    #[test]
    fn step_errors_decode_to_their_step_and_errno() {
        let e = step_error(4, libc::EPERM);
        let (step, errno) = decode(e.raw_os_error().unwrap()).unwrap();
        assert_eq!(step, "mount /proc for the new PID namespace");
        assert_eq!(errno, libc::EPERM);
        assert!(decode(libc::EPERM | (1 << 16)).is_none());
    }

    #[test]
    fn cgroup_mounts_are_found_here() {
        let mounts = cgroup_mounts().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m.to_str().unwrap().starts_with("/sys/fs/cgroup")),
            "no cgroup filesystem in /proc/self/mountinfo: {mounts:?}"
        );
    }
}
