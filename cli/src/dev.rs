//! `fleet dev`: a master and one agent in this process on loopback, with a throwaway CA,
//! ready in seconds; `fleet run` and `fleet status` find it through the dev profile.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::Args;
use fleet_proto::resources::{Attributes, Resources};
use fleet_proto::tls::{self, Role};

use crate::daemons::{resolve, wait_for_signal};
use crate::profile::{DevProfile, fleet_home};

#[derive(Args)]
pub struct DevArgs {
    /// Sandboxes, certificates and state. Default: $FLEET_HOME/dev (~/.fleet/dev).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Address for QUIC (UDP) and HTTP (TCP).
    #[arg(long, default_value = "127.0.0.1:5050")]
    listen: String,
    /// The agent's resources in Mesos syntax; default: detected.
    #[arg(long)]
    resources: Option<String>,
    /// The agent's attributes in Mesos syntax.
    #[arg(long)]
    attributes: Option<String>,
    /// Name of the cgroup under which the agent creates containers.
    #[arg(long, default_value = "fleet-dev")]
    cgroup_root: String,
    /// Directory of device nodes scanned for GPUs (default /dev).
    #[arg(long)]
    gpu_devices: Option<PathBuf>,
    /// Shards: the allocator splits the agents among N shards, whose full cycles run in
    /// parallel, and the master runs N threads, the core's and N-1 network shards with a
    /// QUIC endpoint each on the one UDP port (one thread for both when N is 1).
    /// Default: the number of cores.
    #[arg(long)]
    shards: Option<usize>,
}

/// The port after the master's when it is free (5051 beside the default 5050, as in
/// Mesos), otherwise one the kernel picks; dev prints whichever it got.
fn agent_http_listen(master_http: SocketAddr) -> SocketAddr {
    let next = master_http
        .port()
        .checked_add(1)
        .map(|port| SocketAddr::new(master_http.ip(), port));
    match next {
        Some(addr) if std::net::TcpListener::bind(addr).is_ok() => addr,
        _ => SocketAddr::new(master_http.ip(), 0),
    }
}

pub fn run(args: DevArgs) -> Result<()> {
    let started = Instant::now();
    let work_dir = args.work_dir.unwrap_or_else(|| fleet_home().join("dev"));
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("cannot create work dir {}", work_dir.display()))?;
    let listen = resolve(&args.listen)?;
    let resources = match &args.resources {
        Some(text) => {
            Some(Resources::parse(text).map_err(|e| anyhow!("invalid --resources: {e}"))?)
        }
        None => None,
    };
    let attributes = match &args.attributes {
        Some(text) => Attributes::parse(text).map_err(|e| anyhow!("invalid --attributes: {e}"))?,
        None => Attributes::default(),
    };

    // Throwaway credentials, made fresh on every start.
    let cert_dir = work_dir.join("certs");
    let ca = crate::certs::init(&cert_dir, "dev", true)?;
    let ip = listen.ip().to_string();
    let master_id = tls::issue(&ca, Role::Master, "dev-master", std::slice::from_ref(&ip))?;
    let agent_id = tls::issue(&ca, Role::Agent, "dev-agent", &[])?;

    let master = fleet_master::shell::start(fleet_master::shell::ServerConfig {
        listen,
        http_listen: None,
        ca_pem: ca.cert_pem.clone(),
        identity: master_id,
        core: fleet_master::core::MasterConfig {
            allocator_shards: crate::daemons::shard_count(args.shards)?,
            ..fleet_master::core::MasterConfig::default()
        },
        security: Default::default(),
        replication: None,
    })?;
    let agent = match fleet_agent::start(fleet_agent::AgentConfig {
        masters: vec![master.quic_addr()],
        work_dir: work_dir.join("agent"),
        resources,
        attributes,
        hostname: None,
        ca_pem: ca.cert_pem.clone(),
        identity: agent_id,
        cgroup_root: args.cgroup_root.clone(),
        gpu_devices: args.gpu_devices.clone(),
        cores: None,
        http_listen: Some(agent_http_listen(master.http_addr())),
        // The embedded master starts afresh too: whatever a killed dev run left goes.
        recover: fleet_agent::Recover::Cleanup,
    }) {
        Ok(a) => a,
        Err(e) => {
            master.shutdown();
            return Err(e.into());
        }
    };
    let registered = agent.wait_registered(Duration::from_secs(10));
    let profile = DevProfile {
        master: master.quic_addr().to_string(),
        http: master.http_addr().to_string(),
        ca: cert_dir.join(crate::certs::CA_CERT),
        work_dir: work_dir.clone(),
        pid: std::process::id(),
    };
    let profile_path = profile.write()?;

    println!(
        "Fleet dev cluster ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    println!("  master     {} (QUIC)", master.quic_addr());
    println!("  web/API    http://{}/state", master.http_addr());
    match registered {
        Some(id) => println!("  agent      {id} registered"),
        None => println!("  agent      not registered yet (see the log)"),
    }
    if let Some(addr) = agent.http_addr() {
        println!("  agent HTTP http://{addr}/monitor/statistics");
    }
    println!("  work dir   {}", work_dir.display());
    println!("  profile    {}", profile_path.display());
    println!("Try:  fleet run -- echo hello");
    println!("      fleet status");
    println!("Ctrl-C stops the cluster: tasks are killed and their cgroups removed.");

    let waited = wait_for_signal();
    println!("stopping: killing tasks, removing cgroups");
    DevProfile::remove();
    agent.shutdown();
    master.shutdown();
    waited.map(|_| ())
}
