//! `fleet master` and `fleet agent`: settings from flags, `--config` TOML and FLEET_*
//! variables, then the long-running process until SIGINT or SIGTERM.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use fleet_proto::resources::{Attributes, Resources};

use crate::certs;
use crate::config::Layers;

#[derive(Args)]
pub struct MasterArgs {
    /// TOML file with any of these settings (keys spelled like the flags).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address for QUIC (UDP) and HTTP (TCP). Default 127.0.0.1:5050.
    #[arg(long)]
    listen: Option<String>,
    /// Directory for the master's durable state: the registry's Raft log (a WAL) and its
    /// snapshot. Without it the registry is in memory and a restart forgets it.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Every master of a replicated group (1, 3 or 5), this one included, by the address
    /// each listens on: HOST:PORT,HOST:PORT,... Needs --data-dir. The same list on every
    /// master; node ids follow its sorted order.
    #[arg(long)]
    peers: Option<String>,
    /// Cluster CA certificate (PEM).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// This master's certificate and key (PEM), issued by `fleet certs issue master`.
    #[arg(long)]
    cert: Option<PathBuf>,
    #[arg(long)]
    key: Option<PathBuf>,
    /// Seconds between allocation cycles (Mesos --allocation_interval).
    #[arg(long)]
    allocation_interval: Option<f64>,
    /// Seconds an agent may be silent or disconnected before it is marked unreachable
    /// (its tasks lost, or unreachable for partition-aware frameworks). Default: ping
    /// timeout x max ping timeouts (75).
    #[arg(long)]
    agent_timeout: Option<f64>,
    /// Mesos' --agent_ping_timeout (seconds, default 15): with --max-agent-ping-timeouts,
    /// the agent timeout is their product.
    #[arg(long)]
    agent_ping_timeout: Option<f64>,
    /// Mesos' --max_agent_ping_timeouts (default 5).
    #[arg(long)]
    max_agent_ping_timeouts: Option<u32>,
    /// Seconds an unreachable agent may still re-register with its id and tasks; after
    /// that it is removed and its tasks are gone (default 600).
    #[arg(long)]
    agent_reregister_timeout: Option<f64>,
    /// Shards: the allocator splits the agents among N shards, whose full cycles run in
    /// parallel, and the master runs N threads, the core's and N-1 network shards with a
    /// QUIC endpoint each on the one UDP port (one thread for both when N is 1).
    /// Default: the number of cores.
    #[arg(long)]
    shards: Option<usize>,
    /// Credentials file (JSON, Mesos' shape: {"credentials": [{"principal": P, "secret":
    /// S}]}). With it, frameworks and HTTP callers must authenticate.
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// ACL file (JSON, Mesos' shape: {"permissive": ..., "register_frameworks": [...],
    /// "update_quotas": [...], ...}); see deploy/README.md.
    #[arg(long)]
    acls: Option<PathBuf>,
}

#[derive(Args)]
pub struct AgentArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    /// Master address(es), comma-separated.
    #[arg(long)]
    master: Option<String>,
    /// Sandboxes and the agent's own state.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Mesos resource syntax, e.g. 'cpus:4;mem:4096;ports:[31000-32000]'; overrides detection.
    #[arg(long)]
    resources: Option<String>,
    /// Mesos attribute syntax, e.g. 'rack:a;zone:west'.
    #[arg(long)]
    attributes: Option<String>,
    #[arg(long)]
    hostname: Option<String>,
    #[arg(long)]
    ca: Option<PathBuf>,
    #[arg(long)]
    cert: Option<PathBuf>,
    #[arg(long)]
    key: Option<PathBuf>,
    /// Name of the cgroup under which containers are created.
    #[arg(long)]
    cgroup_root: Option<String>,
    /// Directory of device nodes scanned for GPUs (default /dev).
    #[arg(long)]
    gpu_devices: Option<PathBuf>,
    /// Executors (cores) to run; default: one per core.
    #[arg(long)]
    cores: Option<usize>,
    /// Address of the agent's HTTP endpoint (/health, /state, /metrics,
    /// /monitor/statistics). Default 127.0.0.1:5051; port 0 picks a free one.
    #[arg(long)]
    http_listen: Option<String>,
    /// What to do with the tasks a previous run of this agent left: `reconnect` (default)
    /// takes them back and re-registers with the same agent id; `cleanup` kills them and
    /// starts as a new agent.
    #[arg(long)]
    recover: Option<String>,
}

/// Resolves "host:port" to a socket address, naming the input on failure.
pub fn resolve(addr: &str) -> Result<SocketAddr> {
    addr.to_socket_addrs()
        .with_context(|| format!("invalid address '{addr}': expected HOST:PORT"))?
        .next()
        .ok_or_else(|| anyhow!("address '{addr}' resolves to nothing"))
}

/// Resolves "HOST:PORT,HOST:PORT,...": the masters of a replicated group.
pub fn resolve_list(list: &str) -> Result<Vec<SocketAddr>> {
    let masters = list
        .split(',')
        .filter(|m| !m.trim().is_empty())
        .map(|m| resolve(m.trim()))
        .collect::<Result<Vec<_>>>()?;
    if masters.is_empty() {
        bail!("no master address in '{list}'");
    }
    Ok(masters)
}

/// `--shards`: at least 1; default the number of cores.
pub fn shard_count(asked: Option<usize>) -> Result<usize> {
    match asked {
        Some(0) => bail!("invalid --shards 0: a master needs at least one allocator shard"),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}

fn seconds(value: f64, what: &str) -> Result<Duration> {
    if !(value.is_finite() && value > 0.0) {
        bail!("invalid {what} '{value}': must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(value))
}

/// Which signal ended a daemon's wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Interrupt,
    Terminate,
}

/// Blocks until SIGINT or SIGTERM; says which came.
pub fn wait_for_signal() -> Result<StopSignal> {
    let rt = crate::runtime()?;
    let signal = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|()| StopSignal::Interrupt),
            _ = term.recv() => Ok::<_, std::io::Error>(StopSignal::Terminate),
        }
    })?;
    Ok(signal)
}

pub fn master(args: MasterArgs) -> Result<()> {
    let layers = Layers::load(args.config.as_deref())?;
    let listen = resolve(&layers.get_or(args.listen, "listen", "127.0.0.1:5050".into())?)?;
    let data_dir: Option<PathBuf> = layers.get(args.data_dir, "data-dir")?;
    let ca: PathBuf = layers
        .get(args.ca, "ca")?
        .context("--ca is required: the cluster CA certificate (see `fleet certs init`)")?;
    let cert: PathBuf = layers.get(args.cert, "cert")?.context(
        "--cert is required: this master's certificate (see `fleet certs issue master`)",
    )?;
    let key: PathBuf = layers.get(args.key, "key")?.context("--key is required")?;
    let mut core = fleet_master::core::MasterConfig::default();
    if let Some(s) = layers.get(args.allocation_interval, "allocation-interval")? {
        core.allocation_interval = seconds(s, "--allocation-interval")?;
    }
    let ping: Option<f64> = layers.get(args.agent_ping_timeout, "agent-ping-timeout")?;
    let pings: Option<u32> = layers.get(args.max_agent_ping_timeouts, "max-agent-ping-timeouts")?;
    if ping.is_some() || pings.is_some() {
        let ping = seconds(ping.unwrap_or(15.0), "--agent-ping-timeout")?;
        let pings = pings.unwrap_or(5);
        if pings == 0 {
            bail!("invalid --max-agent-ping-timeouts '0': must be at least 1");
        }
        core.agent_timeout = ping * pings;
    }
    if let Some(s) = layers.get(args.agent_timeout, "agent-timeout")? {
        if ping.is_some() || pings.is_some() {
            bail!(
                "--agent-timeout and --agent-ping-timeout/--max-agent-ping-timeouts both set: \
                 give one or the other"
            );
        }
        core.agent_timeout = seconds(s, "--agent-timeout")?;
    }
    if let Some(s) = layers.get(args.agent_reregister_timeout, "agent-reregister-timeout")? {
        core.agent_reregister_timeout = seconds(s, "--agent-reregister-timeout")?;
    }
    core.allocator_shards = shard_count(layers.get(args.shards, "shards")?)?;
    let peers = match layers.get::<String>(args.peers, "peers")? {
        Some(list) => resolve_list(&list).context("invalid --peers")?,
        None => Vec::new(),
    };
    if let Some(dir) = &data_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    } else if !peers.is_empty() {
        bail!("--peers needs --data-dir: each master keeps the registry's Raft log there");
    }
    let replication = data_dir
        .clone()
        .map(|dir| fleet_master::shell::ReplicaConfig::new(dir, peers));
    let ca_pem = std::fs::read_to_string(&ca)
        .with_context(|| format!("cannot read CA certificate {}", ca.display()))?;
    let credentials: Option<PathBuf> = layers.get(args.credentials, "credentials")?;
    let acls: Option<PathBuf> = layers.get(args.acls, "acls")?;
    let security = fleet_master::auth::Security::load(credentials.as_deref(), acls.as_deref())?;
    let handle = fleet_master::shell::start(fleet_master::shell::ServerConfig {
        listen,
        http_listen: None,
        ca_pem,
        identity: certs::load_identity(&cert, &key)?,
        core,
        security: std::sync::Arc::new(security),
        replication,
    })?;
    if let (Some((id, members)), Some(dir)) = (handle.raft_node(), &data_dir) {
        println!(
            "fleet master: Raft node {id} of {members} (registry in {})",
            dir.display()
        );
    }
    println!(
        "fleet master: QUIC {} / HTTP http://{}",
        handle.quic_addr(),
        handle.http_addr()
    );
    wait_for_signal()?;
    handle.shutdown();
    Ok(())
}

pub fn agent(args: AgentArgs) -> Result<()> {
    let layers = Layers::load(args.config.as_deref())?;
    let masters: String = layers
        .get(args.master, "master")?
        .context("--master is required: the master's HOST:PORT")?;
    let masters = resolve_list(&masters)?;
    let work_dir: PathBuf = layers
        .get(args.work_dir, "work-dir")?
        .context("--work-dir is required")?;
    let resources = match layers.get::<String>(args.resources, "resources")? {
        Some(text) => {
            Some(Resources::parse(&text).map_err(|e| anyhow!("invalid --resources: {e}"))?)
        }
        None => None,
    };
    let attributes = match layers.get::<String>(args.attributes, "attributes")? {
        Some(text) => Attributes::parse(&text).map_err(|e| anyhow!("invalid --attributes: {e}"))?,
        None => Attributes::default(),
    };
    let ca: PathBuf = layers
        .get(args.ca, "ca")?
        .context("--ca is required: the cluster CA certificate")?;
    let cert: PathBuf = layers
        .get(args.cert, "cert")?
        .context("--cert is required: this agent's certificate (see `fleet certs issue agent`)")?;
    let key: PathBuf = layers.get(args.key, "key")?.context("--key is required")?;
    let http_listen =
        resolve(&layers.get_or(args.http_listen, "http-listen", "127.0.0.1:5051".into())?)
            .context("invalid --http-listen")?;
    let config = fleet_agent::AgentConfig {
        masters,
        work_dir,
        resources,
        attributes,
        hostname: layers.get(args.hostname, "hostname")?,
        ca_pem: std::fs::read_to_string(&ca)
            .with_context(|| format!("cannot read CA certificate {}", ca.display()))?,
        identity: certs::load_identity(&cert, &key)?,
        cgroup_root: layers.get_or(args.cgroup_root, "cgroup-root", "fleet".into())?,
        gpu_devices: layers.get(args.gpu_devices, "gpu-devices")?,
        cores: layers.get(args.cores, "cores")?,
        http_listen: Some(http_listen),
        recover: layers
            .get_or(args.recover, "recover", "reconnect".to_string())?
            .parse()
            .map_err(|e: String| anyhow!("invalid --recover: {e}"))?,
    };
    let handle = fleet_agent::start(config)?;
    let http = handle
        .http_addr()
        .map(|a| format!(", HTTP http://{a}"))
        .unwrap_or_default();
    println!(
        "fleet agent: running (work dir {}{http})",
        handle.work_dir().display()
    );
    match wait_for_signal()? {
        // systemctl stop / restart: the tasks run on, and the next start takes them back.
        StopSignal::Terminate => {
            println!(
                "fleet agent: stopping; tasks keep running and are recovered at the next start"
            );
            handle.detach();
        }
        // Ctrl-C at a terminal: stop everything this agent runs.
        StopSignal::Interrupt => {
            println!("fleet agent: stopping its tasks");
            handle.shutdown();
        }
    }
    Ok(())
}
