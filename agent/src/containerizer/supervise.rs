//! Waiting for a container's main process through its pidfd, and signalling its process
//! group.
//!
//! glommio 0.9 has no public "wait until this fd is readable". Its `UnixStream` starts with
//! an io_uring poll for readability on its fd and, once that completes, calls `recv`. On a
//! pidfd the poll completes when the process exits and the `recv` then fails with ENOTSOCK:
//! so a read on a `UnixStream` over a duplicate of the pidfd is an io_uring wait for exit.
//! `waitid(P_PIDFD, WNOHANG)` then tells whether it really exited; if not (which the kernel
//! does not do today) we retry after a short sleep rather than spin.

use std::io;
use std::os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd};
use std::time::Duration;

use futures::AsyncReadExt;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use crate::containerizer::Termination;

/// Waits until the process behind `pidfd` exits, reaps it and returns how it ended
/// (`oom_killed` is left to the caller, who owns the cgroup).
pub async fn wait_exit(pidfd: &OwnedFd) -> io::Result<Termination> {
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
