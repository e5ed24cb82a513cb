//! One container's life on the glommio executor that owns it: sandbox, cgroups, hook,
//! spawn, log copying, supervision, kill with a grace period, cleanup.

use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{Either, join_all, select};
use nix::sys::signal::Signal;
use tokio::sync::mpsc::UnboundedSender;

use crate::cgroups::{ContainerCgroup, Layout};
use crate::containerizer::spawn::{Process, spawn};
use crate::containerizer::supervise::{signal_group, wait_exit};
use crate::containerizer::{ContainerSpec, Termination, logs};
use crate::error::AgentError;

/// Called with a container's spec and cgroup2 id after its cgroups exist and before its
/// process starts (to register the id and its isolation with the BPF programs); an error
/// fails the launch.
pub type CgroupHook = Arc<HookFn>;

/// The function behind a [`CgroupHook`].
pub type HookFn = dyn Fn(&ContainerSpec, u64) -> Result<(), String> + Send + Sync;

/// What happens to containers, in order per container: `Started` or `LaunchFailed`, then
/// (after `Started`) exactly one `Exited`, sent once its cgroups are removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerEvent {
    Started {
        container_id: String,
        pid: i32,
        /// The id BPF programs see for its tasks, where a cgroup2 tree exists.
        cgroup2_id: Option<u64>,
    },
    LaunchFailed {
        container_id: String,
        message: String,
    },
    Exited {
        container_id: String,
        termination: Termination,
        /// Whether a kill had been requested.
        killed: bool,
    },
}

/// A request to stop a container: SIGTERM to its process group, SIGKILL to all its tasks
/// after `grace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillRequest {
    pub grace: Duration,
}

/// What every container of one executor shares.
pub struct LaunchContext {
    pub layout: Layout,
    pub cgroup_root: String,
    pub hook: Option<CgroupHook>,
    pub events: UnboundedSender<ContainerEvent>,
}

/// How long the log copies may outlive the container's last task (a descendant that left
/// the cgroup could hold the sockets open forever).
const LOG_DRAIN: Duration = Duration::from_secs(2);
/// Attempts, 10 ms apart, to empty and remove the cgroups after the main process exits.
const CLEANUP_ATTEMPTS: u32 = 200;
const CLEANUP_PAUSE: Duration = Duration::from_millis(10);

struct Running {
    pid: i32,
    pidfd: std::os::fd::OwnedFd,
    cgroup2_id: Option<u64>,
    logs: Vec<glommio::Task<std::io::Result<u64>>>,
}

async fn launch(
    spec: &ContainerSpec,
    ctx: &LaunchContext,
    cgroup: &ContainerCgroup,
) -> Result<Running, AgentError> {
    std::fs::create_dir_all(&spec.sandbox).map_err(|source| AgentError::Sandbox {
        path: spec.sandbox.clone(),
        source,
    })?;
    cgroup.create(&spec.limits)?;
    let result = start(spec, ctx, cgroup).await;
    if result.is_err() {
        let _ = cgroup.remove();
    }
    result
}

/// Everything after the cgroups exist; on error nothing runs and the caller removes them.
async fn start(
    spec: &ContainerSpec,
    ctx: &LaunchContext,
    cgroup: &ContainerCgroup,
) -> Result<Running, AgentError> {
    let cgroup2_id = cgroup.cgroup2_id()?;
    // The log files exist before the hook runs, so that disk accounting can charge them
    // to the container from the start.
    let mut files = Vec::with_capacity(2);
    for name in ["stdout", "stderr"] {
        let path = spec.sandbox.join(name);
        let file = logs::create(&path)
            .await
            .map_err(|source| AgentError::Sandbox { path, source })?;
        files.push(file);
    }
    if let (Some(hook), Some(id)) = (&ctx.hook, cgroup2_id) {
        hook(spec, id).map_err(|reason| AgentError::Hook {
            container_id: spec.container_id.clone(),
            cgroup2_id: id,
            reason,
        })?;
    }
    let Process {
        pid,
        pidfd,
        stdout,
        stderr,
    } = spawn(spec, &cgroup.procs_files())?;
    let logs = [stdout, stderr]
        .into_iter()
        .zip(files)
        .map(|(socket, file)| glommio::spawn_local(logs::copy(socket, file)))
        .collect();
    Ok(Running {
        pid,
        pidfd,
        cgroup2_id,
        logs,
    })
}

/// Waits for the main process, applying a kill request if one comes: returns how it
/// ended (without the OOM flag) and whether a kill was requested.
async fn supervise(
    running: &Running,
    cgroup: &ContainerCgroup,
    kill: oneshot::Receiver<KillRequest>,
) -> (Option<Termination>, bool) {
    let exit = pin!(wait_exit(&running.pidfd));
    let (result, killed) = match select(exit, kill).await {
        Either::Left((result, _)) => (result, false),
        // The executor dropped the sender: nobody can ask for a kill any more.
        Either::Right((Err(oneshot::Canceled), exit)) => (exit.await, false),
        Either::Right((Ok(request), exit)) => {
            signal_group(running.pid, Signal::SIGTERM);
            let grace = pin!(glommio::timer::sleep(request.grace));
            match select(exit, grace).await {
                Either::Left((result, _)) => (result, true),
                Either::Right(((), exit)) => {
                    signal_group(running.pid, Signal::SIGKILL);
                    let _ = cgroup.kill_all();
                    (exit.await, true)
                }
            }
        }
    };
    let termination = result
        .map_err(|e| tracing::warn!(pid = running.pid, "cannot reap container process: {e}"))
        .ok();
    (termination, killed)
}

/// Kills whatever is left in the cgroups, lets the logs drain, removes the cgroups.
async fn clean_up(
    container_id: &str,
    cgroup: &ContainerCgroup,
    logs: Vec<glommio::Task<std::io::Result<u64>>>,
) {
    for _ in 0..CLEANUP_ATTEMPTS {
        match cgroup.kill_all() {
            Ok(0) => break,
            Ok(_) => glommio::timer::sleep(CLEANUP_PAUSE).await,
            Err(e) => {
                tracing::warn!(container_id, "cannot list the tasks left: {e}");
                break;
            }
        }
    }
    let drained = pin!(join_all(logs));
    if let Either::Left((results, _)) =
        select(drained, pin!(glommio::timer::sleep(LOG_DRAIN))).await
    {
        for result in results {
            if let Err(e) = result {
                tracing::warn!(container_id, "log copy failed: {e}");
            }
        }
    } else {
        tracing::warn!(
            container_id,
            "output still open {LOG_DRAIN:?} after the last task ended"
        );
    }
    let mut last = Ok(());
    for _ in 0..CLEANUP_ATTEMPTS {
        last = cgroup.remove();
        if last.is_ok() {
            return;
        }
        glommio::timer::sleep(CLEANUP_PAUSE).await;
    }
    if let Err(e) = last {
        tracing::warn!(container_id, "cgroup left behind: {e}");
    }
}

/// Runs the container `spec` in `cgroup` to its end. Sends `Started` through
/// `ctx.events` once the process runs, and returns the final event (`LaunchFailed` or
/// `Exited`) for the caller to send once it has forgotten the container.
pub async fn run_container(
    spec: ContainerSpec,
    ctx: Rc<LaunchContext>,
    cgroup: ContainerCgroup,
    kill: oneshot::Receiver<KillRequest>,
) -> ContainerEvent {
    let container_id = spec.container_id.clone();
    let running = match launch(&spec, &ctx, &cgroup).await {
        Ok(running) => running,
        Err(e) => {
            return ContainerEvent::LaunchFailed {
                container_id,
                message: e.to_string(),
            };
        }
    };
    let _ = ctx.events.send(ContainerEvent::Started {
        container_id: container_id.clone(),
        pid: running.pid,
        cgroup2_id: running.cgroup2_id,
    });
    let (termination, killed) = supervise(&running, &cgroup, kill).await;
    let oom_killed = cgroup.oom_killed().unwrap_or_else(|e| {
        tracing::warn!(container_id, "cannot read OOM kills: {e}");
        false
    });
    clean_up(&container_id, &cgroup, running.logs).await;
    ContainerEvent::Exited {
        container_id,
        termination: Termination {
            oom_killed,
            ..termination.unwrap_or_default()
        },
        killed,
    }
}
