//! One pinned glommio executor: receives commands, runs each of its containers as a local
//! task, and answers usage queries for them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::oneshot;

use crate::cgroups::{ContainerCgroup, ContainerUsage};
use crate::checkpoint::{Checkpoint, CheckpointError, Write};
use crate::containerizer::{
    Adoption, ContainerSpec, KillRequest, LaunchContext, adopt_container, run_container,
};
use fleet_proto::ids::AgentId;

/// What the handle asks of an executor.
pub(crate) enum Command {
    Launch(Box<ContainerSpec>),
    /// Take back a container launched before the agent restarted.
    Adopt {
        spec: Box<ContainerSpec>,
        adoption: Option<Adoption>,
    },
    /// Make checkpoint writes durable (through this executor's io_uring).
    Checkpoint {
        checkpoint: Checkpoint,
        agent: Option<AgentId>,
        writes: Vec<Write>,
        reply: flume::Sender<Result<(), CheckpointError>>,
    },
    Kill {
        container_id: String,
        grace: Duration,
    },
    /// Usage of the named containers, or of all when `None`.
    Usage {
        container_ids: Option<Vec<String>>,
        reply: flume::Sender<Vec<(String, ContainerUsage)>>,
    },
    /// Kill every container, wait for all of them to end, then stop.
    Shutdown {
        grace: Duration,
        reply: flume::Sender<()>,
    },
}

/// Which executor owns each container; shared with the handle, which adds entries, while
/// the owning executor removes them just before the container's final event.
pub(crate) type Placement = Arc<Mutex<HashMap<String, usize>>>;

pub(crate) fn forget(placement: &Placement, container_id: &str) {
    placement
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(container_id);
}

struct Container {
    cgroup: ContainerCgroup,
    kill: Option<oneshot::Sender<KillRequest>>,
}

type Containers = Rc<RefCell<HashMap<String, Container>>>;

const SHUTDOWN_POLL: Duration = Duration::from_millis(10);

/// Serves `commands` until a `Shutdown` (or until the handle is dropped, which leaves the
/// containers running, as an agent restart would).
pub(crate) async fn serve(
    commands: flume::Receiver<Command>,
    ctx: Rc<LaunchContext>,
    placement: Placement,
) {
    let containers: Containers = Rc::default();
    // Checkpoint writes under way: a shutdown waits for them, so none is cut off with
    // its caller still waiting for the answer.
    let writing: Rc<std::cell::Cell<usize>> = Rc::default();
    // Set by a Shutdown: commands are still served (the last checkpoint writes and usage
    // queries of the link) until every container has ended and every write is done.
    let mut stopping: Option<flume::Sender<()>> = None;
    loop {
        let command = match &stopping {
            Some(reply) => {
                if containers.borrow().is_empty() && writing.get() == 0 {
                    // Whatever is still queued is dropped with its reply channel, so its
                    // sender hears at once that nobody will answer.
                    while commands.try_recv().is_ok() {}
                    let _ = reply.send(());
                    return;
                }
                match commands.try_recv() {
                    Ok(command) => command,
                    Err(flume::TryRecvError::Empty) => {
                        glommio::timer::sleep(SHUTDOWN_POLL).await;
                        continue;
                    }
                    Err(flume::TryRecvError::Disconnected) => return,
                }
            }
            None => match commands.recv_async().await {
                Ok(command) => command,
                Err(_) => return,
            },
        };
        match command {
            // Nothing new starts once the executor is stopping.
            Command::Launch(spec) | Command::Adopt { spec, .. } if stopping.is_some() => {
                forget(&placement, &spec.container_id);
                let _ = ctx
                    .events
                    .send(crate::containerizer::ContainerEvent::LaunchFailed {
                        container_id: spec.container_id.clone(),
                        message: "the agent is stopping".into(),
                    });
            }
            Command::Launch(spec) => launch(*spec, None, &ctx, &containers, &placement),
            Command::Adopt { spec, adoption } => {
                launch(*spec, Some(adoption), &ctx, &containers, &placement)
            }
            Command::Checkpoint {
                checkpoint,
                agent,
                writes,
                reply,
            } => {
                writing.set(writing.get() + 1);
                let writing = writing.clone();
                glommio::spawn_local(async move {
                    let mut result = Ok(());
                    if let Some(agent) = agent {
                        result = checkpoint.write_agent(&agent).await;
                    }
                    if result.is_ok() {
                        result = checkpoint.apply(writes).await;
                    }
                    let _ = reply.send(result);
                    writing.set(writing.get() - 1);
                })
                .detach();
            }
            Command::Kill {
                container_id,
                grace,
            } => {
                let mut containers = containers.borrow_mut();
                if let Some(kill) = containers
                    .get_mut(&container_id)
                    .and_then(|c| c.kill.take())
                {
                    let _ = kill.send(KillRequest { grace });
                }
            }
            Command::Usage {
                container_ids,
                reply,
            } => {
                let containers = containers.borrow();
                let usage = containers
                    .iter()
                    .filter(|(id, _)| container_ids.as_ref().is_none_or(|ids| ids.contains(id)))
                    // A container whose cgroup is being created or removed has no usage yet.
                    .filter_map(|(id, c)| c.cgroup.usage().ok().map(|u| (id.clone(), u)))
                    .collect();
                let _ = reply.send(usage);
            }
            Command::Shutdown { grace, reply } => {
                for container in containers.borrow_mut().values_mut() {
                    if let Some(kill) = container.kill.take() {
                        let _ = kill.send(KillRequest { grace });
                    }
                }
                stopping = Some(reply);
            }
        }
    }
}

/// Runs `spec` as a new container, or adopts it (`adoption` given) after a restart.
fn launch(
    spec: ContainerSpec,
    adoption: Option<Option<Adoption>>,
    ctx: &Rc<LaunchContext>,
    containers: &Containers,
    placement: &Placement,
) {
    let container_id = spec.container_id.clone();
    let cgroup = ctx.layout.container(&ctx.cgroup_root, &container_id);
    let (kill, killed) = oneshot::channel();
    containers.borrow_mut().insert(
        container_id.clone(),
        Container {
            cgroup: cgroup.clone(),
            kill: Some(kill),
        },
    );
    let ctx = ctx.clone();
    let containers = containers.clone();
    let placement = placement.clone();
    glommio::spawn_local(async move {
        let events = ctx.events.clone();
        let last = match adoption {
            None => run_container(spec, ctx, cgroup, killed).await,
            Some(adoption) => adopt_container(spec, ctx, cgroup, killed, adoption).await,
        };
        containers.borrow_mut().remove(&container_id);
        forget(&placement, &container_id);
        let _ = events.send(last);
    })
    .detach();
}
