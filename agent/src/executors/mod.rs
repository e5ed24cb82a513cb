//! The thread-per-core pool: one glommio executor pinned to each core, each owning the
//! containers it launched (spawn, logs, supervision, usage). The link to the master runs
//! on its own tokio thread: it talks to the pool through runtime-agnostic flume channels
//! and hears back on a tokio unbounded channel of [`ContainerEvent`]s.

mod worker;

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use fleet_proto::ids::AgentId;

use crate::cgroups::{ContainerUsage, DEFAULT_MOUNT, Layout};
use crate::checkpoint::{Checkpoint, CheckpointError, Write};
use crate::containerizer::{
    Adoption, CgroupHook, ContainerEvent, ContainerSpec, HookFn, LaunchContext,
};
use crate::error::AgentError;
use worker::{Command, forget};

/// How to start the pool.
#[derive(Clone)]
pub struct ExecutorsConfig {
    /// How many executors; `None`: one per online CPU.
    pub cores: Option<usize>,
    /// The cgroup under which every container's cgroup is made, in every hierarchy.
    pub cgroup_root: String,
    /// Where the cgroup hierarchies are mounted.
    pub cgroup_mount: PathBuf,
    /// Called with each container's cgroup2 id before its process starts.
    pub hook: Option<CgroupHook>,
}

impl Default for ExecutorsConfig {
    fn default() -> Self {
        ExecutorsConfig {
            cores: None,
            cgroup_root: "fleet".to_string(),
            cgroup_mount: PathBuf::from(DEFAULT_MOUNT),
            hook: None,
        }
    }
}

impl std::fmt::Debug for ExecutorsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorsConfig")
            .field("cores", &self.cores)
            .field("cgroup_root", &self.cgroup_root)
            .field("cgroup_mount", &self.cgroup_mount)
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl ExecutorsConfig {
    /// Sets the hook called with each container's cgroup2 id before its process starts.
    pub fn with_hook(mut self, hook: Box<HookFn>) -> Self {
        self.hook = Some(Arc::from(hook));
        self
    }
}

/// The handle on the executor pool. Every method takes `&self`, so it can be shared.
pub struct Executors {
    senders: Vec<flume::Sender<Command>>,
    placement: worker::Placement,
    joins: Mutex<Vec<ExecutorJoinHandle<()>>>,
    layout: Layout,
    cgroup_root: String,
}

/// How long a usage query waits for each executor.
const USAGE_WAIT: Duration = Duration::from_secs(2);
/// The longest a checkpoint write may take before its caller gives up waiting.
const CHECKPOINT_WAIT: Duration = Duration::from_secs(30);

fn online_cpus() -> usize {
    // SAFETY: sysconf only reads a system value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

fn executor_err(index: usize, reason: impl ToString) -> AgentError {
    AgentError::Executor {
        index,
        reason: reason.to_string(),
    }
}

impl Executors {
    /// Detects the cgroup layout, creates the root cgroup and starts the executors, each
    /// pinned to its CPU. Returns the handle and the stream of container events.
    pub fn start(
        config: ExecutorsConfig,
    ) -> Result<(Executors, UnboundedReceiver<ContainerEvent>), AgentError> {
        let layout = Layout::detect_at(&config.cgroup_mount)?;
        layout.prepare_root(&config.cgroup_root)?;
        let (events, events_rx) = unbounded_channel();
        let placement: worker::Placement = Arc::default();
        let cpus = online_cpus();
        let count = config.cores.unwrap_or(cpus).max(1);
        let (ready, ready_rx) = flume::bounded::<usize>(count);
        let mut senders = Vec::with_capacity(count);
        let mut joins = Vec::with_capacity(count);
        for index in 0..count {
            let (tx, rx) = flume::unbounded();
            let layout = layout.clone();
            let cgroup_root = config.cgroup_root.clone();
            let hook = config.hook.clone();
            let events = events.clone();
            let placement = placement.clone();
            let ready = ready.clone();
            let join = LocalExecutorBuilder::new(Placement::Fixed(index % cpus))
                .name(&format!("fleet-exec-{index}"))
                .spawn(move || async move {
                    let ctx = Rc::new(LaunchContext {
                        layout,
                        cgroup_root,
                        hook,
                        events,
                    });
                    let _ = ready.send(index);
                    worker::serve(rx, ctx, placement).await;
                })
                .map_err(|e| executor_err(index, e))?;
            senders.push(tx);
            joins.push(join);
        }
        drop(ready);
        for _ in 0..count {
            // A sender dropped without a word: that executor failed to start.
            ready_rx.recv().map_err(|_| {
                executor_err(0, "an executor stopped while starting (io_uring setup?)")
            })?;
        }
        let executors = Executors {
            senders,
            placement,
            joins: Mutex::new(joins),
            layout,
            cgroup_root: config.cgroup_root,
        };
        Ok((executors, events_rx))
    }

    /// The cgroup layout detected at start.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Hands `spec` to the executor with the fewest containers and returns at once; the
    /// outcome arrives as `Started` or `LaunchFailed`.
    pub fn launch(&self, spec: ContainerSpec) -> Result<(), AgentError> {
        self.place(spec, None)
    }

    /// Takes back a container launched before the agent restarted (see
    /// `containerizer::adopt_container`): `Started` if its process still runs, then
    /// `Exited`; or `Exited` at once if it ended while the agent was down.
    pub fn adopt(&self, spec: ContainerSpec, adoption: Option<Adoption>) -> Result<(), AgentError> {
        self.place(spec, Some(adoption))
    }

    /// Makes checkpoint `writes` (and the agent record for `agent`, if given) durable,
    /// through the io_uring of the first executor.
    pub async fn checkpoint(
        &self,
        checkpoint: &Checkpoint,
        agent: Option<AgentId>,
        writes: Vec<Write>,
    ) -> Result<(), CheckpointError> {
        let (reply, answer) = flume::bounded(1);
        let stopped = || CheckpointError::Io {
            op: "write",
            path: checkpoint.root().to_owned(),
            source: std::io::Error::other("the executors have stopped"),
        };
        self.senders[0]
            .send(Command::Checkpoint {
                checkpoint: checkpoint.clone(),
                agent,
                writes,
                reply,
            })
            .map_err(|_| stopped())?;
        // Never wait forever: a write stuck this long is reported, and the caller goes on.
        match tokio::time::timeout(CHECKPOINT_WAIT, answer.recv_async()).await {
            Ok(answer) => answer.map_err(|_| stopped())?,
            Err(_) => Err(CheckpointError::Io {
                op: "write",
                path: checkpoint.root().to_owned(),
                source: std::io::Error::other(format!(
                    "no answer from the executor within {CHECKPOINT_WAIT:?}"
                )),
            }),
        }
    }

    fn place(
        &self,
        spec: ContainerSpec,
        adoption: Option<Option<Adoption>>,
    ) -> Result<(), AgentError> {
        let index = {
            let mut placement = self.placement.lock().unwrap_or_else(|e| e.into_inner());
            if placement.contains_key(&spec.container_id) {
                return Err(AgentError::DuplicateContainer(spec.container_id));
            }
            let mut load = vec![0usize; self.senders.len()];
            for &i in placement.values() {
                load[i] += 1;
            }
            let index = (0..load.len()).min_by_key(|&i| load[i]).unwrap_or(0);
            placement.insert(spec.container_id.clone(), index);
            index
        };
        let container_id = spec.container_id.clone();
        let command = match adoption {
            None => Command::Launch(Box::new(spec)),
            Some(adoption) => Command::Adopt {
                spec: Box::new(spec),
                adoption,
            },
        };
        self.senders[index].send(command).map_err(|_| {
            forget(&self.placement, &container_id);
            executor_err(index, "stopped")
        })
    }

    fn owner(&self, container_id: &str) -> Result<usize, AgentError> {
        self.placement
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(container_id)
            .copied()
            .ok_or_else(|| AgentError::UnknownContainer(container_id.to_string()))
    }

    /// Asks for `container_id` to be stopped: SIGTERM to its process group, SIGKILL to all
    /// its tasks after `grace`. Its `Exited` event carries `killed: true`.
    pub fn kill(&self, container_id: &str, grace: Duration) -> Result<(), AgentError> {
        let index = self.owner(container_id)?;
        self.senders[index]
            .send(Command::Kill {
                container_id: container_id.to_string(),
                grace,
            })
            .map_err(|_| executor_err(index, "stopped"))
    }

    /// What `container_id` has used so far.
    pub async fn usage(&self, container_id: &str) -> Result<ContainerUsage, AgentError> {
        let index = self.owner(container_id)?;
        let (reply, answer) = flume::bounded(1);
        self.senders[index]
            .send(Command::Usage {
                container_ids: Some(vec![container_id.to_string()]),
                reply,
            })
            .map_err(|_| executor_err(index, "stopped"))?;
        let usage = answer
            .recv_async()
            .await
            .map_err(|_| executor_err(index, "stopped"))?;
        usage
            .into_iter()
            .next()
            .map(|(_, u)| u)
            .ok_or_else(|| AgentError::UnknownContainer(container_id.to_string()))
    }

    /// What every running container has used so far.
    pub async fn usage_all(&self) -> Vec<(String, ContainerUsage)> {
        let mut answers = Vec::with_capacity(self.senders.len());
        for sender in &self.senders {
            let (reply, answer) = flume::bounded(1);
            if sender
                .send(Command::Usage {
                    container_ids: None,
                    reply,
                })
                .is_ok()
            {
                answers.push(answer);
            }
        }
        let mut all = Vec::new();
        for answer in answers {
            // An executor that stopped (agent shutting down) never answers: do not wait.
            if let Ok(Ok(usage)) = tokio::time::timeout(USAGE_WAIT, answer.recv_async()).await {
                all.extend(usage);
            }
        }
        all
    }

    /// Kills every container (SIGKILL after `grace`), waits until each has ended and its
    /// cgroups are gone, stops the executors and removes the root cgroup.
    pub async fn shutdown(&self, grace: Duration) -> Result<(), AgentError> {
        let mut answers = Vec::with_capacity(self.senders.len());
        for sender in &self.senders {
            let (reply, answer) = flume::bounded(1);
            if sender.send(Command::Shutdown { grace, reply }).is_ok() {
                answers.push(answer);
            }
        }
        for answer in answers {
            let _ = answer.recv_async().await;
        }
        let joins = std::mem::take(&mut *self.joins.lock().unwrap_or_else(|e| e.into_inner()));
        for (index, join) in joins.into_iter().enumerate() {
            join.join().map_err(|e| executor_err(index, e))?;
        }
        self.layout.remove_root(&self.cgroup_root)
    }
}

impl std::fmt::Debug for Executors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executors")
            .field("executors", &self.senders.len())
            .field("layout", &self.layout)
            .field("cgroup_root", &self.cgroup_root)
            .finish()
    }
}
