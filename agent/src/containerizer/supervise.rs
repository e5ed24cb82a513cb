//! Waiting for a container's main process through its pidfd, and signalling its process
//! group.
//!
//! glommio 0.9 has no public "wait until this fd is readable". Its `UnixStream` starts with
//! an io_uring poll for readability on its fd and, once that completes, calls `recv`. On a
//! pidfd the poll completes when the process exits and the `recv` then fails with ENOTSOCK:
//! so a read on a `UnixStream` over a duplicate of the pidfd is an io_uring wait for exit.
//! `waitid(P_PIDFD, WNOHANG)` then tells whether it really exited; if not (which the kernel
//! does not do today) we retry after a short sleep rather than spin.
//!
//! A process adopted after an agent restart is not the agent's child: `waitid` answers
//! ECHILD, and its exit record (written by its C process, see `init.rs`) says how it ended.

use std::io;
use std::os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::AsyncReadExt;
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use crate::containerizer::Termination;

/// Waits until the process behind `pidfd` exits, reaps it and returns how it ended
/// (`oom_killed` is left to the caller, who owns the cgroup). For a process that is not
/// this agent's child, how it ended comes from the exit record in `runtime_dir`.
pub async fn wait_exit(pidfd: &OwnedFd, runtime_dir: Option<&Path>) -> io::Result<Termination> {
    let poll_fd = pidfd.try_clone()?;
    // SAFETY: `poll_fd` is a fresh fd we own; the stream takes it over and closes it.
    let mut readiness = unsafe { glommio::net::UnixStream::from_raw_fd(poll_fd.into_raw_fd()) };
    loop {
        let mut byte = [0u8; 1];
        // Completes (with ENOTSOCK, or data never) once the pidfd is readable: see module doc.
        let _ = readiness.read(&mut byte).await;
        match waitid(
            Id::PIDFd(pidfd.as_fd()),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
        ) {
            Ok(WaitStatus::Exited(_, code)) => {
                return Ok(Termination {
                    exit_code: Some(code),
                    ..Termination::default()
                });
            }
            Ok(WaitStatus::Signaled(_, signal, _)) => {
                return Ok(Termination {
                    signal: Some(signal as i32),
                    ..Termination::default()
                });
            }
            Ok(_) => glommio::timer::sleep(Duration::from_millis(10)).await,
            Err(Errno::ECHILD) if runtime_dir.is_some() => {
                let dir = runtime_dir.unwrap_or(Path::new("."));
                return Ok(ExitRecord::read(dir)?.unwrap_or_default());
            }
            Err(errno) => return Err(io::Error::from(errno)),
        }
    }
}

/// Sends `signal` to the process group led by `pid` (the container's session). Only valid
/// while that process is not yet reaped, so its pid cannot belong to anyone else.
pub fn signal_group(pid: i32, signal: Signal) {
    // ESRCH: the whole group is gone already.
    let _ = killpg(Pid::from_raw(pid), signal);
}

/// How a container's main process ended, as its C process records it in
/// `<runtime_dir>/exit`: one line, `exit CODE` or `signal NUMBER`. The file is absent while
/// the process runs, and stays absent when the process was killed before it could write
/// (SIGKILL to the whole cgroup).
#[derive(Debug)]
pub struct ExitRecord;

impl ExitRecord {
    pub const FILE: &'static str = "exit";

    pub fn path(runtime_dir: &Path) -> PathBuf {
        runtime_dir.join(Self::FILE)
    }

    /// The recorded termination; `None` when nothing was recorded.
    pub fn read(runtime_dir: &Path) -> io::Result<Option<Termination>> {
        match std::fs::read_to_string(Self::path(runtime_dir)) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Parses a record; `None` for an empty or unreadable one.
    pub fn parse(text: &str) -> Option<Termination> {
        let (kind, value) = text.trim().split_once(' ')?;
        let value: i32 = value.trim().parse().ok()?;
        match kind {
            "exit" => Some(Termination {
                exit_code: Some(value),
                ..Termination::default()
            }),
            "signal" => Some(Termination {
                signal: Some(value),
                ..Termination::default()
            }),
            _ => None,
        }
    }
}

/// The start time of process `pid` (clock ticks after boot, field 22 of
/// `/proc/<pid>/stat`): with the pid, it names one process for the life of the machine.
pub fn process_start_time(pid: i32) -> io::Result<u64> {
    // Field 22 is the 20th after the command name.
    stat_field(pid, 19, "start time")
}

/// The parent of process `pid` (field 4 of `/proc/<pid>/stat`).
pub fn process_parent(pid: i32) -> io::Result<i32> {
    stat_field(pid, 1, "parent")
}

/// Field `index` (counted from the state, field 3) of `/proc/<pid>/stat`.
fn stat_field<T: std::str::FromStr>(pid: i32, index: usize, what: &str) -> io::Result<T> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after
    // the last ')'.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| io::Error::other(format!("/proc/{pid}/stat: no ')' in {stat:?}")))?;
    rest.split_whitespace()
        .nth(index)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::other(format!("/proc/{pid}/stat: no {what} in {stat:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_records_parse() {
        let t = ExitRecord::parse("exit 3\n").unwrap();
        assert_eq!((t.exit_code, t.signal), (Some(3), None));
        let t = ExitRecord::parse("signal 9\n").unwrap();
        assert_eq!((t.exit_code, t.signal), (None, Some(9)));
        assert!(ExitRecord::parse("").is_none());
        assert!(ExitRecord::parse("exit").is_none());
        assert!(ExitRecord::parse("nonsense 1").is_none());
    }

    #[test]
    fn start_time_names_one_process() {
        let me = i32::try_from(std::process::id()).unwrap();
        let a = process_start_time(me).unwrap();
        assert_eq!(a, process_start_time(me).unwrap());
        assert!(a > 0);
        assert!(process_start_time(i32::MAX).is_err());
        let parent = i32::try_from(std::os::unix::process::parent_id()).unwrap();
        assert_eq!(process_parent(me).unwrap(), parent);
    }
}
