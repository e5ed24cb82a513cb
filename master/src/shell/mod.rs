//! The I/O shell around the master's core: QUIC endpoints for agents and frameworks, the
//! thread that drives the core, and the HTTP API with the web UI. The core decides; this
//! module only moves bytes and time.
//!
//! Threads, for `--shards N`: the core's thread (a tokio-uring runtime with the driver)
//! and N-1 network shards (`net.rs`), each a tokio-uring runtime with its own QUIC
//! endpoint on the one UDP port; with N = 1 the core's thread serves the endpoint too.
//! One HTTP thread serves snapshots of the state published by the driver, so a read of
//! /state never waits on allocation. A replicated master (`replica/`) adds the
//! Raft thread, and runs the core only while it leads (`leadership.rs`, `follower.rs`).

mod driver;
mod endpoints;
mod follower;
mod http;
mod http_auth;
mod leadership;
mod metrics;
mod net;
mod operator;
mod quic;
mod raft_endpoint;
mod redirect;
pub mod replica;
mod snapshots;
mod udp;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use fleet_proto::tls::CertifiedKey;
use tokio::sync::{mpsc, watch};

use crate::auth::Security;
use crate::core::{Master, MasterConfig};
use crate::registry::InMemoryRegistry;

pub use driver::Published;
pub use leadership::Leadership;
pub use raft_endpoint::RaftEndpoint;
pub use replica::{ReplicaConfig, ReplicaView};
pub use snapshots::{PUBLISH_EVERY, Snapshots};
pub use udp::{QUIC_SOCKET_BUFFER, grow_buffers};

/// Everything needed to start a master.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// UDP address of the QUIC endpoint; HTTP listens on the same address over TCP unless
    /// `http_listen` says otherwise.
    pub listen: SocketAddr,
    pub http_listen: Option<SocketAddr>,
    /// The cluster CA certificate (PEM) that agent certificates must chain to.
    pub ca_pem: String,
    /// This master's certificate and key.
    pub identity: CertifiedKey,
    pub core: MasterConfig,
    /// Credentials and ACLs for frameworks and HTTP callers (default: none required).
    pub security: Arc<Security>,
    /// The registry in a Raft group of masters, on disk (None: in memory, this master
    /// alone, as `fleet dev` runs it).
    pub replication: Option<ReplicaConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("invalid TLS set-up: {0}")]
    Tls(String),
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
    /// The replicated registry could not be opened (a damaged log names file and offset).
    #[error("{0}")]
    Registry(String),
}

/// A running master. Dropping it does not stop it; call [`MasterHandle::shutdown`].
pub struct MasterHandle {
    quic_addr: SocketAddr,
    http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
    snapshots: Snapshots,
    replica: Option<replica::Replica>,
    leadership: watch::Receiver<Leadership>,
    /// Keeps a lone master's leadership (always serving) alive.
    _alone: Option<watch::Sender<Leadership>>,
}

impl MasterHandle {
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// A snapshot of the state, at most [`PUBLISH_EVERY`] old (it may wait that long for
    /// the driver to copy one).
    pub fn state(&self) -> Arc<Published> {
        self.snapshots.fresh_blocking()
    }

    /// Whether this master serves now, and where the leader is when it does not.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    /// The Raft node's status, for a replicated master.
    pub fn raft_status(&self) -> Option<replica::RaftStatus> {
        self.replica.as_ref().map(|r| r.status().borrow().clone())
    }

    /// This master's Raft node id and the number of masters in its group.
    pub fn raft_node(&self) -> Option<(u64, usize)> {
        self.replica.as_ref().map(|r| (r.id(), r.members()))
    }

    /// Stops accepting, closes every connection and joins the threads.
    pub fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(replica) = self.replica.take() {
            replica.shutdown();
        }
    }

    /// Blocks until the master stops (after `stop_signal` fires on another thread).
    pub fn join(mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(replica) = self.replica.take() {
            replica.shutdown();
        }
    }

    /// A sender that stops the master when `true` is sent.
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Binds the sockets, then starts the shard and HTTP threads. Errors in binding or TLS
/// set-up are returned here, before anything runs.
pub fn start(config: ServerConfig) -> Result<MasterHandle, ServerError> {
    // N shards are N threads, one per core: the core's thread and N-1 network shards, each
    // with an endpoint; with one shard, the core's thread serves the endpoint too.
    let threads_wanted = config.core.allocator_shards.max(1);
    let shard_count = (threads_wanted - 1).max(1);
    let bind_err = |source| ServerError::Bind {
        what: "QUIC (UDP)",
        addr: config.listen,
        source,
    };
    let sockets = udp::bind_shards(config.listen, shard_count).map_err(bind_err)?;
    let quic_addr = sockets[0].local_addr().map_err(bind_err)?;
    for socket in &sockets {
        let (recv_buf, send_buf) = udp::grow_buffers(socket, udp::QUIC_SOCKET_BUFFER);
        tracing::debug!(recv_buf, send_buf, "QUIC socket buffers");
    }
    let http_listen = config
        .http_listen
        .unwrap_or(SocketAddr::new(quic_addr.ip(), quic_addr.port()));
    let tcp = std::net::TcpListener::bind(http_listen).map_err(|source| ServerError::Bind {
        what: "HTTP (TCP)",
        addr: http_listen,
        source,
    })?;
    let http_addr = tcp.local_addr().map_err(|source| ServerError::Bind {
        what: "HTTP (TCP)",
        addr: http_listen,
        source,
    })?;
    let server_config = quic::server_config(&config.ca_pem, &config.identity)?;
    let replica = match &config.replication {
        Some(replication) => {
            let members =
                replica::members(quic_addr, &replication.peers).map_err(ServerError::Registry)?;
            Some(
                replica::Replica::start(replication, members, &config.ca_pem, &config.identity)
                    .map_err(ServerError::Registry)?,
            )
        }
        None => None,
    };
    let (alone, leadership) = match &replica {
        Some(r) => (None, r.leadership()),
        None => {
            let (tx, rx) = watch::channel(Leadership::alone());
            (Some(tx), rx)
        }
    };
    let view = replica.as_ref().map(replica::Replica::view);

    let (stop, stop_rx) = watch::channel(false);
    let idle = Master::new(config.core.clone(), Box::new(InMemoryRegistry::default())).state();
    let (publisher, snapshots) =
        snapshots::channel(Published::new(idle.clone(), quic_addr, http_addr));
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (reports_tx, reports_rx) = mpsc::channel(driver::REPORT_QUEUE);
    let http_events = events_tx.clone();
    tracing::info!("master security: {}", config.security.describe());
    let http_security = config.security.clone();

    let core_config = config.core.clone();
    let core_view = view.clone();
    // A new core for each term this master leads, from the registry as committed.
    let make_master = move || match &core_view {
        Some(view) => Master::new(core_config.clone(), Box::new(view.registry())),
        None => Master::new(core_config.clone(), Box::new(InMemoryRegistry::default())),
    };
    let stats = Arc::new(net::ShardStats::new(shard_count));
    let buffers = driver::ReportBuffers::new();
    let mut threads = Vec::with_capacity(shard_count + 2);
    let mut shards: Vec<net::Shard> = Vec::with_capacity(shard_count);
    for (index, socket) in sockets.into_iter().enumerate() {
        shards.push(net::Shard {
            index,
            socket,
            config: server_config.clone(),
            events: events_tx.clone(),
            reports: reports_tx.clone(),
            security: config.security.clone(),
            routing: quic::Routing {
                leadership: leadership.clone(),
                raft: view.clone(),
            },
            stats: stats.clone(),
            buffers: buffers.clone(),
            stop: stop_rx.clone(),
        });
    }
    drop((events_tx, reports_tx));
    // With one thread in all, the core's thread serves the only endpoint.
    let core_shard = if threads_wanted == 1 {
        shards.pop()
    } else {
        None
    };
    for shard in shards {
        let mut stop = stop_rx.clone();
        let shard_cpu = shard.index + 1;
        let thread = std::thread::Builder::new()
            .name(format!("fleet-net-{}", shard.index))
            .spawn(move || {
                // Pinned past cpu 0, which the core's thread mostly has to itself.
                net::run(shard, Some(shard_cpu), quic_addr, async || {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                })
            })
            .map_err(|e| ServerError::Thread("network shard", e))?;
        threads.push(thread);
    }
    let plural = if shard_count == 1 { "" } else { "s" };
    tracing::info!("master listening on {quic_addr} (QUIC, {shard_count} network shard{plural})");

    // The core runs on a thread of its own, fed by every shard: under load it is the
    // busiest thread, and a thread that drove it and also served half the connections
    // left them waiting (`fleet bench offers` on 2 cores: 57,000 placements a second with
    // the core on one of two network shards, 72,000 with the core apart and two network
    // shards, 88,000 with the core apart and one: three busy threads on two cores lose to
    // two).
    let mut core_leadership = leadership.clone();
    let mut core_stop = stop_rx.clone();
    let (mut events_rx, mut reports_rx, mut publisher) = (events_rx, reports_rx, publisher);
    let mut drive = async move || {
        while !*core_stop.borrow() {
            if core_leadership.borrow().serving {
                let master = make_master();
                publisher.stale();
                driver::run(
                    master,
                    &mut events_rx,
                    &mut reports_rx,
                    &buffers,
                    &mut publisher,
                    &mut core_stop,
                    &mut core_leadership,
                    quic_addr,
                    http_addr,
                )
                .await;
                publisher.stale();
            } else {
                follower::wait(
                    &mut events_rx,
                    &mut reports_rx,
                    &mut publisher,
                    &mut core_stop,
                    &mut core_leadership,
                    &idle,
                    quic_addr,
                    http_addr,
                )
                .await;
            }
        }
    };
    // Not pinned: a full allocation cycle runs the allocator shards on threads this one
    // spawns, and a thread inherits its creator's cpu mask, so pinning it would put every
    // allocator shard on one cpu.
    let core = std::thread::Builder::new()
        .name("fleet-core".into())
        .spawn(move || match core_shard {
            Some(shard) => net::run(shard, None, quic_addr, drive),
            None => tokio_uring::start(drive()),
        })
        .map_err(|e| ServerError::Thread("core", e))?;
    threads.push(core);

    let http_snapshots = snapshots.clone();
    let http_stop = stop_rx;
    let http_leadership = leadership.clone();
    let http_stats = stats.clone();
    let http = std::thread::Builder::new()
        .name("fleet-http".into())
        .spawn(move || {
            http::serve(
                tcp,
                http_snapshots,
                http_events,
                http_security,
                http::Routing {
                    leadership: http_leadership,
                    raft: view,
                    shards: http_stats,
                },
                http_stop,
            )
        })
        .map_err(|e| ServerError::Thread("http", e))?;
    threads.push(http);
    tracing::info!("master HTTP on http://{http_addr}");

    Ok(MasterHandle {
        quic_addr,
        http_addr,
        stop,
        threads,
        snapshots,
        replica,
        leadership,
        _alone: alone,
    })
}
