//! Forks a container's process into its cgroups: the child joins every cgroup and starts
//! its own session before `exec`, so the command never runs unisolated and outlives the
//! agent. Also opens the pidfd that supervises it.
//! Its stdout and stderr are the sandbox files themselves, so no pipe ties it to the agent.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::containerizer::supervise::process_start_time;
use crate::containerizer::{ContainerSpec, init};
use crate::error::AgentError;

/// PATH of a container that does not set its own.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A failure to join cgroup file `i` is sent from the child as errno + `(i + 1) << 16`:
/// std passes only an i32 from `pre_exec` to the parent, and errno values stay below 4096.
const JOIN_ERR_SHIFT: u32 = 16;

/// A started container process.
#[derive(Debug)]
pub struct Process {
    pub pid: i32,
    /// Its start time (see [`process_start_time`]): with the pid, its identity.
    pub start_time: u64,
    /// Readable when the process exits; `waitid(P_PIDFD)` reaps it.
    pub pidfd: OwnedFd,
}

/// Where a container's output goes and how its end is recorded.
#[derive(Debug)]
pub struct Outputs {
    /// The sandbox's `stdout` and `stderr` files, open for appending.
    pub stdout: File,
    pub stderr: File,
    /// `<runtime_dir>/exit`, where the process records how it ended. The child creates it
    /// itself once it is inside its cgroups, so a restarted agent that finds no record
    /// knows nothing of the container ever ran.
    pub exit_record: Option<PathBuf>,
}

fn spawn_err(spec: &ContainerSpec, reason: impl ToString) -> AgentError {
    AgentError::Spawn {
        container_id: spec.container_id.clone(),
        command: spec.command.value.clone(),
        reason: reason.to_string(),
    }
}

fn command(spec: &ContainerSpec) -> Command {
    let mut cmd = if spec.command.shell {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(&spec.command.value);
        cmd
    } else {
        // As in Mesos' CommandInfo, `arguments` is the whole argv, argv[0] included.
        let mut cmd = Command::new(&spec.command.value);
        if let Some((argv0, rest)) = spec.command.arguments.split_first() {
            std::os::unix::process::CommandExt::arg0(&mut cmd, argv0);
            cmd.args(rest);
        }
        cmd
    };
    cmd.current_dir(&spec.sandbox)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env("FLEET_SANDBOX", &spec.sandbox)
        .env("MESOS_SANDBOX", &spec.sandbox)
        .stdin(Stdio::null());
    cmd
}

/// Runs in the forked child before exec: only async-signal-safe calls (open, write, close,
/// setsid), no allocation. Writing "0" to cgroup.procs moves the writing process.
fn join_cgroups_and_detach(procs_files: &[CString]) -> io::Result<()> {
    for (i, path) in procs_files.iter().enumerate() {
        // SAFETY: `path` is a valid NUL-terminated string; the fd is closed below.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        // SAFETY: writes one byte from a static buffer to the fd just opened.
        let written = (fd >= 0).then(|| unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) });
        let errno = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        if fd >= 0 {
            // SAFETY: closes the fd opened above, once.
            unsafe { libc::close(fd) };
        }
        if written != Some(1) {
            let index = i32::try_from(i + 1).unwrap_or(i32::MAX >> JOIN_ERR_SHIFT);
            return Err(io::Error::from_raw_os_error(
                errno | (index << JOIN_ERR_SHIFT),
            ));
        }
    }
    // SAFETY: setsid has no preconditions; it fails only for a group leader, which a
    // freshly forked child is not.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    // The task gets stdin, stdout and stderr and nothing else the agent (or whoever
    // started the agent) holds open: mark every other descriptor close-on-exec.
    // SAFETY: close_range only changes descriptor flags; it is async-signal-safe.
    if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates the exit record in the child, inside its cgroups: close-on-exec, so C keeps it
/// (it never execs) and the command does not see it. Only open(2).
fn open_exit_record(path: &CString) -> io::Result<libc::c_int> {
    // SAFETY: `path` is a valid NUL-terminated string; open is async-signal-safe.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        let errno = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        return Err(init::step_error(7, errno));
    }
    Ok(fd)
}

/// close_range(2) flag (Linux 5.11): set close-on-exec instead of closing.
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Starts `spec`'s command in the cgroups whose `cgroup.procs` files are `procs_files`, in
/// PID and mount namespaces of its own (see `init.rs`), writing to `outputs`. Either the
/// process runs inside all of them, or it never ran: an error names the file it could not
/// join, the namespace step that failed, or why the command could not start.
pub fn spawn(
    spec: &ContainerSpec,
    procs_files: &[PathBuf],
    outputs: Outputs,
) -> Result<Process, AgentError> {
    let paths = procs_files
        .iter()
        .map(|p| CString::new(p.as_os_str().as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| spawn_err(spec, format!("cgroup path with a NUL byte: {e}")))?;
    let read_only = init::cgroup_mounts()
        .map_err(|e| spawn_err(spec, format!("cannot list the cgroup mounts: {e}")))?;
    let Outputs {
        stdout,
        stderr,
        exit_record,
    } = outputs;
    let exit_record = exit_record
        .map(|p| CString::new(p.as_os_str().as_bytes()))
        .transpose()
        .map_err(|e| spawn_err(spec, format!("exit record path with a NUL byte: {e}")))?;
    let mut cmd = command(spec);
    cmd.stdout(Stdio::from(stdout)).stderr(Stdio::from(stderr));
    // SAFETY: the closure only makes async-signal-safe calls (see join_cgroups_and_detach,
    // open_exit_record and init::enter).
    unsafe {
        cmd.pre_exec(move || {
            join_cgroups_and_detach(&paths)?;
            let exit_fd = match &exit_record {
                Some(path) => open_exit_record(path)?,
                None => -1,
            };
            init::enter(&read_only, exit_fd)
        })
    };
    let spawned = cmd.spawn();
    drop(cmd);
    let child = spawned.map_err(|e| match e.raw_os_error() {
        Some(code) if init::decode(code).is_some() => {
            let (step, errno) = init::decode(code).unwrap_or(("set up", libc::EIO));
            spawn_err(
                spec,
                format!("cannot {step}: {}", io::Error::from_raw_os_error(errno)),
            )
        }
        Some(code) if code >> JOIN_ERR_SHIFT > 0 => {
            let index = usize::try_from((code >> JOIN_ERR_SHIFT) - 1).unwrap_or(usize::MAX);
            let errno = code & ((1 << JOIN_ERR_SHIFT) - 1);
            AgentError::Cgroup {
                op: "join",
                path: procs_files.get(index).cloned().unwrap_or_default(),
                source: io::Error::from_raw_os_error(errno),
            }
        }
        _ => spawn_err(spec, e),
    })?;
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    // Not reaped yet, so /proc/<pid> is there even if it already ended.
    let opened = pidfd_open(pid).map_err(|e| format!("pidfd_open (Linux 5.3+): {e}"));
    let identity = opened.and_then(|pidfd| {
        let start_time = process_start_time(pid)
            .map_err(|e| format!("cannot read the process's start time: {e}"))?;
        Ok((pidfd, start_time))
    });
    let (pidfd, start_time) = match identity {
        Ok(found) => found,
        Err(reason) => {
            // Unsupervised processes are not allowed: kill it and reap it here.
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
            return Err(spawn_err(spec, reason));
        }
    };
    Ok(Process {
        pid,
        start_time,
        pidfd,
    })
}
