//! One container's life on the glommio executor that owns it: sandbox, cgroups, hook,
//! spawn, supervision, kill with a grace period, cleanup; or, after an agent restart,
//! adoption of a container that kept running, then the same supervision and cleanup.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use futures::future::{Either, select};
use nix::sys::signal::Signal;
use tokio::sync::mpsc::UnboundedSender;

use crate::cgroups::{ContainerCgroup, Layout};
use crate::containerizer::spawn::{Outputs, Process, pidfd_open, spawn};
use crate::containerizer::supervise::{
    ExitRecord, process_parent, process_start_time, signal_group, wait_exit,
};
use crate::containerizer::{ContainerSpec, Termination};
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
    /// Its process runs (or, after an agent restart, was found still running).
    Started {
        container_id: String,
        pid: i32,
        /// With the pid, the process's identity (see `process_start_time`).
        start_time: u64,
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

/// Attempts, 10 ms apart, to empty and remove the cgroups after the main process exits.
const CLEANUP_ATTEMPTS: u32 = 200;
const CLEANUP_PAUSE: Duration = Duration::from_millis(10);

struct Running {
    pid: i32,
    start_time: u64,
    pidfd: OwnedFd,
    cgroup2_id: Option<u64>,
}

/// The process an agent recorded for a container before it restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adoption {
    pub pid: i32,
    pub start_time: u64,
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
    let open_log = |name: &str| {
        let path = spec.sandbox.join(name);
        File::options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| AgentError::Sandbox { path, source })
    };
    let (stdout, stderr) = (open_log("stdout")?, open_log("stderr")?);
    if let (Some(hook), Some(id)) = (&ctx.hook, cgroup2_id) {
        hook(spec, id).map_err(|reason| AgentError::Hook {
            container_id: spec.container_id.clone(),
            cgroup2_id: id,
            reason,
        })?;
    }
    // The child creates the record once inside its cgroups (see `adopt_container`).
    let exit_record = match &spec.runtime_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| AgentError::Sandbox {
                path: dir.clone(),
                source,
            })?;
            Some(ExitRecord::path(dir))
        }
        None => None,
    };
    let outputs = Outputs {
        stdout,
        stderr,
        exit_record,
    };
    let Process {
        pid,
        start_time,
        pidfd,
    } = spawn(spec, &cgroup.procs_files(), outputs)?;
    Ok(Running {
        pid,
        start_time,
        pidfd,
        cgroup2_id,
    })
}

/// Waits for the main process, applying a kill request if one comes: returns how it
/// ended (without the OOM flag) and whether a kill was requested.
async fn supervise(
    running: &Running,
    cgroup: &ContainerCgroup,
    kill: oneshot::Receiver<KillRequest>,
    runtime_dir: Option<&Path>,
) -> (Option<Termination>, bool) {
    let exit = pin!(wait_exit(&running.pidfd, runtime_dir));
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

/// Kills whatever is left in the cgroups and removes them.
async fn clean_up(container_id: &str, cgroup: &ContainerCgroup) {
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
        start_time: running.start_time,
        cgroup2_id: running.cgroup2_id,
    });
    finish(
        container_id,
        &running,
        &cgroup,
        kill,
        spec.runtime_dir.as_deref(),
    )
    .await
}

/// Supervises a running container to its end, cleans up, and returns its `Exited` event.
async fn finish(
    container_id: String,
    running: &Running,
    cgroup: &ContainerCgroup,
    kill: oneshot::Receiver<KillRequest>,
    runtime_dir: Option<&Path>,
) -> ContainerEvent {
    let (termination, killed) = supervise(running, cgroup, kill, runtime_dir).await;
    let oom_killed = cgroup.oom_killed().unwrap_or_else(|e| {
        tracing::warn!(container_id, "cannot read OOM kills: {e}");
        false
    });
    clean_up(&container_id, cgroup).await;
    ContainerEvent::Exited {
        container_id,
        termination: Termination {
            oom_killed,
            ..termination.unwrap_or_default()
        },
        killed,
    }
}

/// Opens a pidfd on the recorded process if it is still the same process (same pid and
/// start time) and still in the container's cgroup.
fn reattach(adoption: &Adoption, cgroup: &ContainerCgroup) -> Option<OwnedFd> {
    let pidfd = pidfd_open(adoption.pid).ok()?;
    // Checked after the pidfd is open: from here on the pid cannot be reused under us.
    let same = process_start_time(adoption.pid).ok() == Some(adoption.start_time);
    let inside = cgroup.pids().is_ok_and(|pids| pids.contains(&adoption.pid));
    (same && inside).then_some(pidfd)
}

/// The container's main process (C in `init.rs`) when the agent died before recording it:
/// the one process in the cgroup whose parent is outside it.
fn unrecorded_process(cgroup: &ContainerCgroup) -> Option<Adoption> {
    let pids = cgroup.pids().ok()?;
    let main = pids
        .iter()
        .copied()
        .find(|pid| process_parent(*pid).is_ok_and(|parent| !pids.contains(&parent)))?;
    let start_time = process_start_time(main).ok()?;
    tracing::info!(
        pid = main,
        "found the process of a container the agent died starting"
    );
    Some(Adoption {
        pid: main,
        start_time,
    })
}

/// Takes back a container that an agent launched before it restarted: if its process
/// (`adoption`) still runs, it is supervised again (a `Started` event is sent first, with
/// its cgroup2 id, after the hook has seen it again); if it ended while the agent was
/// down, its exit record says how. A container with no recorded process was still
/// starting when the agent died: its process is found in its cgroup (the one whose parent
/// is outside it) and adopted; if it never forked (no exit record yet), it is launched
/// now; if it forked and ended without a record, it fails saying so.
pub async fn adopt_container(
    spec: ContainerSpec,
    ctx: Rc<LaunchContext>,
    cgroup: ContainerCgroup,
    kill: oneshot::Receiver<KillRequest>,
    adoption: Option<Adoption>,
) -> ContainerEvent {
    let container_id = spec.container_id.clone();
    let runtime_dir = spec.runtime_dir.as_deref();
    let adoption = match adoption.or_else(|| unrecorded_process(&cgroup)) {
        Some(adoption) => adoption,
        None => {
            let record = runtime_dir.map(ExitRecord::path);
            if record.as_ref().is_some_and(|r| !r.exists()) {
                // Its child makes the exit record once inside the cgroups: nothing of it
                // ran. Start it now, as the agent that died was about to.
                clean_up(&container_id, &cgroup).await;
                tracing::info!(
                    container_id,
                    "launching a container the agent died starting"
                );
                return run_container(spec, ctx, cgroup, kill).await;
            }
            clean_up(&container_id, &cgroup).await;
            return match runtime_dir.map(ExitRecord::read) {
                Some(Ok(Some(termination))) => ContainerEvent::Exited {
                    container_id,
                    termination,
                    killed: false,
                },
                _ => ContainerEvent::LaunchFailed {
                    container_id,
                    message: "the agent restarted while the container was starting, and its \
                              process ended without an exit status"
                        .into(),
                },
            };
        }
    };
    let Some(pidfd) = reattach(&adoption, &cgroup) else {
        let recorded = runtime_dir.map(ExitRecord::read).transpose();
        let termination = recorded.unwrap_or_else(|e| {
            tracing::warn!(container_id, "cannot read the exit record: {e}");
            None
        });
        let oom_killed = cgroup.oom_killed().unwrap_or(false);
        clean_up(&container_id, &cgroup).await;
        tracing::info!(
            container_id,
            ?termination,
            "container ended while the agent was down"
        );
        return ContainerEvent::Exited {
            container_id,
            termination: Termination {
                oom_killed,
                ..termination.flatten().unwrap_or_default()
            },
            killed: false,
        };
    };
    let cgroup2_id = cgroup.cgroup2_id().unwrap_or_else(|e| {
        tracing::warn!(container_id, "{e}");
        None
    });
    if let (Some(hook), Some(id)) = (&ctx.hook, cgroup2_id)
        && let Err(reason) = hook(&spec, id)
    {
        tracing::warn!(
            container_id,
            "cannot admit the adopted container again: {reason}"
        );
    }
    tracing::info!(container_id, pid = adoption.pid, "container adopted");
    let running = Running {
        pid: adoption.pid,
        start_time: adoption.start_time,
        pidfd,
        cgroup2_id,
    };
    let _ = ctx.events.send(ContainerEvent::Started {
        container_id: container_id.clone(),
        pid: running.pid,
        start_time: running.start_time,
        cgroup2_id,
    });
    finish(container_id, &running, &cgroup, kill, runtime_dir).await
}
