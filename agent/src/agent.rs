//! Starting and stopping a whole agent: detect resources, load the eBPF probes (refusing to
//! start without them), start the executor pool, the HTTP endpoint, then the link to the
//! master.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fleet_proto::ids::AgentId;
use fleet_proto::messages::agent::{AgentInfo, Usage};
use fleet_proto::resources::{Attributes, Resources};
use fleet_proto::tls::CertifiedKey;
use tokio::sync::watch;

use crate::cgroups::Layout;
use crate::checkpoint::{Checkpoint, Recovered};
use crate::detect::{self, MachineResources};
use crate::ebpf::UsageProbes;
use crate::error::AgentError;
use crate::executors::{Executors, ExecutorsConfig};
use crate::http::Publisher;
use crate::link::{self, LinkConfig, Parts};
use crate::tasks::Tasks;

/// Everything needed to start an agent.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub masters: Vec<SocketAddr>,
    pub work_dir: PathBuf,
    /// Resources given on the command line; they replace detected ones of the same name.
    pub resources: Option<Resources>,
    pub attributes: Attributes,
    pub hostname: Option<String>,
    pub ca_pem: String,
    pub identity: CertifiedKey,
    /// The cgroup under which containers are made; also names the bpffs pin directory.
    pub cgroup_root: String,
    /// Where to look for /dev/nvidia* GPU devices (default /dev).
    pub gpu_devices: Option<PathBuf>,
    /// Executors to run; default one per core.
    pub cores: Option<usize>,
    /// Where to serve HTTP (/health, /state, /metrics, /monitor/statistics); None serves
    /// nothing. Port 0 picks a free port: `AgentHandle::http_addr` says which.
    pub http_listen: Option<SocketAddr>,
    /// What to do with what a previous run left in `<work_dir>/meta`.
    pub recover: Recover,
}

/// How an agent starts over what a previous run of it left (Mesos' `--recover`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Recover {
    /// Take the running containers back, report those that ended while the agent was
    /// down, and re-register with the same agent id and tasks.
    #[default]
    Reconnect,
    /// Kill every container the previous run left, discard its checkpoint and register
    /// as a new agent.
    Cleanup,
}

impl std::str::FromStr for Recover {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reconnect" => Ok(Recover::Reconnect),
            "cleanup" => Ok(Recover::Cleanup),
            other => Err(format!(
                "unknown recover mode '{other}' (expected reconnect or cleanup)"
            )),
        }
    }
}

/// A running agent.
pub struct AgentHandle {
    work_dir: PathBuf,
    stop: watch::Sender<bool>,
    link: Option<JoinHandle<()>>,
    http: Option<JoinHandle<()>>,
    http_addr: Option<SocketAddr>,
    executors: Arc<Executors>,
    registered: watch::Receiver<Option<AgentId>>,
    resources: Resources,
    probes: Arc<UsageProbes>,
}

impl AgentHandle {
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// The address the HTTP endpoint listens on, if it serves one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The resources this agent offers.
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// Waits up to `timeout` for the first registration; returns the agent id.
    pub fn wait_registered(&self, timeout: Duration) -> Option<AgentId> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(id) = self.registered.borrow().clone() {
                return Some(id);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the agent and leaves its containers running, as a crash or an upgrade would:
    /// their state is in the checkpoint, and the next start (`Recover::Reconnect`) takes
    /// them back. The eBPF maps stay pinned so their counts carry over.
    pub fn detach(mut self) {
        let _ = self.stop.send(true);
        if let Some(link) = self.link.take() {
            let _ = link.join();
        }
        if let Some(http) = self.http.take() {
            let _ = http.join();
        }
        // Dropping the pool's handle stops the executors without touching the containers.
        drop(self.executors);
    }

    /// Kills every container and removes their cgroups, then stops the link. Containers go
    /// first, while the link still runs, so their final updates reach the master.
    pub fn shutdown(mut self) {
        let executors = self.executors.clone();
        let done = std::thread::spawn(move || {
            futures::executor::block_on(executors.shutdown(Duration::from_secs(2)))
        })
        .join();
        if let Ok(Err(e)) = done {
            tracing::warn!("agent shutdown: {e}");
        }
        // Give the link a moment to send the last updates.
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.stop.send(true);
        if let Some(link) = self.link.take() {
            let _ = link.join();
        }
        if let Some(http) = self.http.take() {
            let _ = http.join();
        }
        // No container outlives a clean stop, so their pinned counters go too.
        drop(self.executors);
        match Arc::try_unwrap(self.probes) {
            Ok(probes) => {
                if let Err(e) = probes.unpin() {
                    tracing::warn!("agent shutdown: {e}");
                }
            }
            Err(probes) => tracing::warn!(
                "agent shutdown: eBPF maps stay pinned in {}",
                probes.pin_dir().display()
            ),
        }
    }
}

/// The machine's resources in Mesos' vocabulary, with `--resources` taking precedence per name.
pub fn offered_resources(
    machine: &MachineResources,
    flag: Option<&Resources>,
) -> Result<Resources, AgentError> {
    let mut text = format!(
        "cpus:{};mem:{};disk:{}",
        machine.cpus, machine.mem_mb, machine.disk_mb
    );
    if !machine.ports.is_empty() {
        let ranges: Vec<String> = machine
            .ports
            .iter()
            .map(|(b, e)| format!("{b}-{e}"))
            .collect();
        text.push_str(&format!(";ports:[{}]", ranges.join(",")));
    }
    if !machine.gpus.is_empty() {
        text.push_str(&format!(";gpus:{}", machine.gpus.len()));
    }
    let detected = Resources::parse(&text)
        .map_err(|e| AgentError::Config(format!("detected resources '{text}': {e}")))?;
    let Some(flag) = flag else {
        return Ok(detected);
    };
    let given: Vec<&str> = flag.iter().map(|r| r.name.as_str()).collect();
    let mut out = detected.filter(|r| !given.contains(&r.name.as_str()));
    out.add(flag);
    Ok(out)
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Reads what a previous run left (`Reconnect`), or kills its containers and discards it
/// (`Cleanup`). A damaged checkpoint stops the agent with the file named.
fn previous_run(
    checkpoint: &Checkpoint,
    recover: Recover,
    layout: &Layout,
    cgroup_root: &str,
) -> Result<Option<Recovered>, AgentError> {
    match recover {
        Recover::Reconnect => checkpoint
            .read()
            .map_err(|e| AgentError::Config(e.to_string())),
        Recover::Cleanup => {
            // Whatever can be read names the containers to stop; a damaged checkpoint is
            // discarded all the same.
            if let Ok(Some(previous)) = checkpoint.read() {
                for record in &previous.tasks {
                    let cgroup = layout.container(cgroup_root, &record.container_id);
                    if let Ok(n) = cgroup.kill_all()
                        && n > 0
                    {
                        tracing::info!(container = %record.container_id, "killed {n} processes");
                    }
                    for _ in 0..200 {
                        if cgroup.remove().is_ok() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                        let _ = cgroup.kill_all();
                    }
                }
            }
            checkpoint
                .clear()
                .map_err(|e| AgentError::Config(e.to_string()))?;
            Ok(None)
        }
    }
}

/// Starts an agent. It refuses to start when a required eBPF program cannot load or the
/// cgroup hierarchy cannot be used, naming the reason.
pub fn start(config: AgentConfig) -> Result<AgentHandle, AgentError> {
    if config.masters.is_empty() {
        return Err(AgentError::Config("no master address given".into()));
    }
    std::fs::create_dir_all(&config.work_dir).map_err(|source| AgentError::Sandbox {
        path: config.work_dir.clone(),
        source,
    })?;
    // Bound first: a taken port stops the agent before it touches cgroups or BPF.
    let http_listener = match config.http_listen {
        Some(addr) => {
            let listen = |source| AgentError::Listen { addr, source };
            let listener = std::net::TcpListener::bind(addr).map_err(listen)?;
            let bound = listener.local_addr().map_err(listen)?;
            Some((listener, bound))
        }
        None => None,
    };
    let http_addr = http_listener.as_ref().map(|(_, bound)| *bound);
    let dev = config
        .gpu_devices
        .clone()
        .unwrap_or_else(|| PathBuf::from("/dev"));
    let machine = detect::detect(&config.work_dir, &dev)?;
    let resources = offered_resources(&machine, config.resources.as_ref())?;

    let layout = Layout::detect()?;
    layout.prepare_root(&config.cgroup_root)?;
    let cgroup2_root =
        layout
            .cgroup2_root(&config.cgroup_root)
            .ok_or_else(|| AgentError::CgroupLayout {
                path: PathBuf::from(crate::cgroups::DEFAULT_MOUNT),
                reason: "no cgroup2 tree (neither /sys/fs/cgroup nor /sys/fs/cgroup/unified is \
                     cgroup2): port, device and network isolation attach there"
                    .into(),
            })?;
    let probes = match UsageProbes::load(&config.cgroup_root, &cgroup2_root) {
        Ok(probes) => Arc::new(probes),
        Err(e) => {
            // Refusing to start leaves nothing behind: no root cgroups, no pin directory.
            let _ = layout.remove_root(&config.cgroup_root);
            if let Ok(dir) = crate::ebpf::default_pin_dir(&config.cgroup_root) {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(e.into());
        }
    };
    let handle_probes = probes.clone();
    let hook_probes = probes.clone();
    let executors_config = ExecutorsConfig {
        cores: config.cores,
        cgroup_root: config.cgroup_root.clone(),
        ..ExecutorsConfig::default()
    }
    .with_hook(Box::new(move |spec, cgroup_id| {
        hook_probes
            .admit(cgroup_id, spec)
            .map_err(|e| e.to_string())
    }));
    let (executors, events) = Executors::start(executors_config)?;
    let executors = Arc::new(executors);
    let checkpoint = Checkpoint::new(&config.work_dir);
    let previous = match previous_run(&checkpoint, config.recover, &layout, &config.cgroup_root) {
        Ok(previous) => previous,
        Err(e) => {
            let _ = std::thread::spawn({
                let executors = executors.clone();
                move || futures::executor::block_on(executors.shutdown(Duration::ZERO))
            })
            .join();
            return Err(e);
        }
    };

    let hostname = config.hostname.clone().unwrap_or_else(hostname);
    let info = AgentInfo {
        hostname,
        http_address: http_addr.map(|a| a.to_string()).unwrap_or_default(),
        resources: resources.clone(),
        attributes: config.attributes.clone(),
    };
    tracing::info!(resources = %resources, "agent starting");
    let (registered_tx, registered) = watch::channel(None);
    let (monitor, snapshot) = Publisher::new();
    let (stop, stop_rx) = watch::channel(false);
    let http = match http_listener {
        Some((listener, _)) => {
            let info = info.clone();
            let stop = stop_rx.clone();
            let sandboxes = config.work_dir.join("slaves");
            Some(
                std::thread::Builder::new()
                    .name("fleet-http".into())
                    .spawn(move || crate::http::serve(listener, info, sandboxes, snapshot, stop))
                    .map_err(|source| AgentError::Thread {
                        what: "HTTP",
                        source,
                    })?,
            )
        }
        None => None,
    };
    let known_id = previous
        .as_ref()
        .map(|p| p.agent.agent_id.clone())
        .unwrap_or_else(|| AgentId::new(""));
    let checkpointed_agent = previous.as_ref().map(|p| p.agent.agent_id.clone());
    let mut tasks = Tasks::new(known_id, config.work_dir.clone());
    tasks.set_gpus(machine.gpus.clone(), detect::gpu_control(&dev)?);
    let mut adopting = std::collections::HashSet::new();
    if let Some(previous) = previous {
        if previous.rebooted {
            tracing::warn!("the machine rebooted since the checkpoint: no container survived");
        }
        let count = previous.tasks.len();
        for (spec, adoption) in tasks.restore(previous.tasks) {
            let container_id = spec.container_id.clone();
            adopting.insert(container_id.clone());
            if let Err(e) = executors.adopt(spec, adoption) {
                tracing::error!(container = %container_id, "cannot adopt: {e}");
            }
        }
        tracing::info!(
            agent_id = %tasks.agent_id(),
            tasks = count,
            adopting = adopting.len(),
            "recovering from the checkpoint"
        );
    }
    let parts = Parts {
        executors: executors.clone(),
        probes,
        events,
        tasks,
        cgroups: Default::default(),
        ended: Usage::default(),
        registered: registered_tx,
        monitor,
        checkpoint,
        checkpointed_agent,
        adopting,
    };
    let link_config = LinkConfig {
        masters: config.masters.clone(),
        ca_pem: config.ca_pem.clone(),
        identity: config.identity.clone(),
        info,
    };
    let link = std::thread::Builder::new()
        .name("fleet-link".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("cannot start the link runtime: {e}");
                    return;
                }
            };
            rt.block_on(link::run(link_config, parts, stop_rx));
        })
        .map_err(|source| AgentError::Thread {
            what: "link",
            source,
        })?;
    Ok(AgentHandle {
        work_dir: config.work_dir,
        stop,
        link: Some(link),
        http,
        http_addr,
        executors,
        registered,
        resources,
        probes: handle_probes,
    })
}
