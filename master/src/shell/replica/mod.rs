//! This master's member of the replicated registry: a Raft node (`fleet-raft`: openraft
//! on the io_uring WAL) opened from the data dir, on a thread and tokio runtime of its
//! own; its QUIC transport (`transport.rs`); and the watch that decides whether this
//! master serves (`Leadership`) and what it reports (`status.rs`).
//!
//! Members: `--peers` lists every master (this one included) by the address it listens
//! on; node ids are positions in the sorted list, from 1, so every master derives the
//! same ids from the same list. A master that finds its log empty initializes the group
//! with that membership; openraft makes doing so on every master safe, so no master has
//! to come up first. Node k waits (k - 1) x [`FORM_STAGGER`] for another master to reach
//! it first: when all start together node 1 forms the group and the others join it by
//! replication, instead of each calling an election that unseats the leader just
//! elected.
//!
//! Serving: a master runs the core while openraft makes it leader and a quorum confirmed
//! that within [`LEASE`]; confirming (`ensure_linearizable`) also waits until every
//! committed entry is applied, so a new leader's core starts from the whole registry.
//! It takes new clients (and says it serves) only within the strict lease: 80 % of
//! `election_timeout_max` after the start of the last confirmed round, the time for
//! which openraft's followers refuse to vote for another master. So no two masters ever
//! take clients at once, and a leader whose confirmations are late for a moment refuses
//! new connections for that moment instead of dropping its core and every session.

mod status;
pub mod transport;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fleet_proto::tls::CertifiedKey;
use fleet_raft::{Node, NodeConfig, NodeId, Raft, RaftNode, StateView};
use openraft::ServerState;
use tokio::sync::watch;

use super::leadership::Leadership;
use crate::registry::{CommitTimes, RegistryState, ReplicatedRegistry};

pub use status::{Member, RaftStatus, render};

/// How long a leader keeps its core after a quorum last confirmed it leads.
pub const LEASE: Duration = Duration::from_secs(1);
/// How often a leader asks a quorum to confirm it (and a follower looks at its metrics).
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// How a master replicates its registry.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Where the Raft log (`log/`, a WAL) and the snapshot (`state/`) live.
    pub data_dir: PathBuf,
    /// Every master's address, this one's included (empty: this master alone).
    pub peers: Vec<SocketAddr>,
    /// How long a registry write may wait for a quorum before the core is told it failed.
    pub write_timeout: Duration,
    pub node: NodeConfig,
}

impl ReplicaConfig {
    /// Heartbeats every 50 ms, election timeouts of 150 to 300 ms. In openraft 0.9 a
    /// follower that had a leader starts an election only after the leader lease
    /// (`election_timeout_max`) plus its timeout, and 2 x `election_timeout_max` more when
    /// it sees a longer log elsewhere; with `NodeConfig`'s 300 to 600 ms a new leader took
    /// 1.0 to 2.4 s in the failover test, past the 2 s a failover may take.
    pub fn new(data_dir: PathBuf, peers: Vec<SocketAddr>) -> Self {
        let mut node = NodeConfig::default();
        node.raft.heartbeat_interval = 50;
        node.raft.election_timeout_min = 150;
        node.raft.election_timeout_max = 300;
        ReplicaConfig {
            data_dir,
            peers,
            write_timeout: Duration::from_secs(5),
            node,
        }
    }
}

/// The group's members by node id, and this master's id.
#[derive(Debug, Clone, PartialEq)]
pub struct Members {
    pub id: NodeId,
    pub nodes: BTreeMap<NodeId, Node>,
}

/// Whether `ip` is one of this machine's addresses (a socket can be bound to it).
fn is_local(ip: std::net::IpAddr) -> bool {
    ip.is_loopback() || UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Ids from the sorted peer list (1, 3 or 5 masters), and which one is `listen`: the
/// same address, or, when listening on a wildcard address, the one peer on this
/// machine with the same port.
pub fn members(listen: SocketAddr, peers: &[SocketAddr]) -> Result<Members, String> {
    let mut sorted: Vec<SocketAddr> = if peers.is_empty() {
        vec![listen]
    } else {
        peers.to_vec()
    };
    sorted.sort();
    let unique: BTreeSet<SocketAddr> = sorted.iter().copied().collect();
    if unique.len() != sorted.len() {
        return Err(format!("--peers names a master twice: {sorted:?}"));
    }
    if ![1, 3, 5].contains(&sorted.len()) {
        return Err(format!(
            "--peers names {} masters; a Raft group of masters has 1, 3 or 5",
            sorted.len()
        ));
    }
    let mine: Vec<usize> = sorted
        .iter()
        .enumerate()
        .filter(|(_, peer)| {
            **peer == listen
                || (listen.ip().is_unspecified()
                    && peer.port() == listen.port()
                    && is_local(peer.ip()))
        })
        .map(|(i, _)| i)
        .collect();
    let position = match mine.as_slice() {
        [one] => *one,
        [] => {
            return Err(format!(
                "--peers {} does not name this master (--listen {listen}): list every \
                 master, this one included, by the address it listens on",
                list(&sorted)
            ));
        }
        _ => {
            return Err(format!(
                "--peers {} names this master (--listen {listen}) more than once",
                list(&sorted)
            ));
        }
    };
    let nodes = sorted
        .iter()
        .enumerate()
        .map(|(i, addr)| (i as NodeId + 1, Node::new(addr.to_string())))
        .collect();
    Ok(Members {
        id: position as NodeId + 1,
        nodes,
    })
}

fn list(peers: &[SocketAddr]) -> String {
    peers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A running Raft node and what the rest of the master needs of it.
pub struct Replica {
    id: NodeId,
    members: usize,
    raft: Raft<RegistryState>,
    state: StateView<RegistryState>,
    runtime: tokio::runtime::Handle,
    leadership: watch::Receiver<Leadership>,
    status: watch::Receiver<RaftStatus>,
    times: Arc<CommitTimes>,
    write_timeout: Duration,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What the Raft thread hands back once the node is open.
struct Opened {
    raft: Raft<RegistryState>,
    state: StateView<RegistryState>,
    runtime: tokio::runtime::Handle,
}

impl Replica {
    /// Opens the node in `config.data_dir` (a damaged log or snapshot fails here, naming
    /// the file and offset), and starts joining or forming the group and watching
    /// leadership.
    pub fn start(
        config: &ReplicaConfig,
        members: Members,
        ca_pem: &str,
        identity: &CertifiedKey,
    ) -> Result<Replica, String> {
        let id = members.id;
        let count = members.nodes.len();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Opened, String>>();
        let (stop, stop_rx) = watch::channel(false);
        let (leadership_tx, leadership) = watch::channel(Leadership {
            serving: false,
            leader: None,
            until: None,
        });
        let (status_tx, status) = watch::channel(RaftStatus::default());
        let (dir, node_config) = (config.data_dir.clone(), config.node.clone());
        let (ca_pem, identity) = (ca_pem.to_owned(), identity.clone());
        let ipv6 = members
            .nodes
            .values()
            .any(|n| n.addr.parse::<SocketAddr>().is_ok_and(|a| a.is_ipv6()));
        let thread = std::thread::Builder::new()
            .name("fleet-raft".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("fleet-raft-rt")
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start the Raft runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let transport = match transport::QuicTransport::new(&ca_pem, &identity, ipv6) {
                        Ok(t) => Arc::new(t),
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let node = match RaftNode::start(id, &dir, &node_config, transport).await {
                        Ok(node) => node,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!(
                                "cannot open the registry in {}: {e}",
                                dir.display()
                            )));
                            return;
                        }
                    };
                    let opened = Opened {
                        raft: node.raft().clone(),
                        state: node.state().clone(),
                        runtime: tokio::runtime::Handle::current(),
                    };
                    if ready_tx.send(Ok(opened)).is_err() {
                        let _ = node.shutdown().await;
                        return;
                    }
                    // Beside the rest: while this master waits its turn to form the group,
                    // it answers the others' RPCs (the master serves them once opened).
                    let (raft, group) = (node.raft().clone(), members.clone());
                    tokio::spawn(async move {
                        if let Err(e) = join_group(&raft, &group).await {
                            tracing::error!("{e}");
                        }
                    });
                    let strict =
                        Duration::from_millis(node_config.raft.election_timeout_max * 4 / 5);
                    watch_leadership(&node, &members, strict, stop_rx, leadership_tx, status_tx)
                        .await;
                    if let Err(e) = node.shutdown().await {
                        tracing::warn!("Raft node did not shut down cleanly: {e}");
                    }
                });
            })
            .map_err(|e| format!("cannot start the Raft thread: {e}"))?;
        let opened = match ready_rx.recv() {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err("the Raft thread stopped while opening the registry".to_owned());
            }
        };
        Ok(Replica {
            id,
            members: count,
            raft: opened.raft,
            state: opened.state,
            runtime: opened.runtime,
            leadership,
            status,
            times: Arc::new(CommitTimes::default()),
            write_timeout: config.write_timeout,
            stop,
            thread: Some(thread),
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// How many masters the group has.
    pub fn members(&self) -> usize {
        self.members
    }

    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    pub fn status(&self) -> watch::Receiver<RaftStatus> {
        self.status.clone()
    }

    /// What the QUIC endpoint, the HTTP API and the core need of the node.
    pub fn view(&self) -> ReplicaView {
        ReplicaView {
            raft: self.raft.clone(),
            state: self.state.clone(),
            runtime: self.runtime.clone(),
            status: self.status.clone(),
            times: Arc::clone(&self.times),
            write_timeout: self.write_timeout,
        }
    }

    /// Stops the node and waits until its log is closed.
    pub fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A cheap handle on the running node, cloned into the master's threads.
#[derive(Clone)]
pub struct ReplicaView {
    raft: Raft<RegistryState>,
    state: StateView<RegistryState>,
    runtime: tokio::runtime::Handle,
    status: watch::Receiver<RaftStatus>,
    times: Arc<CommitTimes>,
    write_timeout: Duration,
}

impl std::fmt::Debug for ReplicaView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaView").finish_non_exhaustive()
    }
}

impl ReplicaView {
    /// A registry for the core of one term this master leads.
    pub fn registry(&self) -> ReplicatedRegistry {
        ReplicatedRegistry::new(
            self.raft.clone(),
            self.state.clone(),
            self.runtime.clone(),
            self.write_timeout,
            Arc::clone(&self.times),
        )
    }

    /// Answers a peer master's Raft connection (accepted on the master's endpoint).
    pub fn serve(&self, conn: quinn::Connection) {
        self.runtime
            .spawn(transport::serve_connection(conn, self.raft.clone()));
    }

    /// This master's view; `serving` is false once the lease ran out, even before the
    /// Raft thread noticed (a process that was paused).
    pub fn status(&self) -> RaftStatus {
        let mut status = self.status.borrow().clone();
        if status
            .lease_until
            .is_some_and(|until| Instant::now() >= until)
        {
            status.serving = false;
        }
        status
    }

    /// The `fleet_master_raft_*` series for /metrics.
    pub fn metrics(&self) -> String {
        render(&self.status(), &self.times)
    }
}

/// How long node k + 1 waits after node k before forming the group itself.
const FORM_STAGGER: Duration = Duration::from_secs(1);

/// Forms the group on a master whose log is empty (safe on every master with the same
/// list), and warns when the group stored differs from `--peers`.
async fn join_group(raft: &Raft<RegistryState>, members: &Members) -> Result<(), String> {
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| format!("Raft node {}: {e}", members.id))?;
    if !initialized {
        // Give lower-numbered masters their turn: one that forms the group reaches this
        // one with its membership, and this one joins instead of starting an election.
        let turn = FORM_STAGGER * u32::try_from(members.id.saturating_sub(1)).unwrap_or(0);
        let deadline = tokio::time::Instant::now() + turn;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if raft.is_initialized().await.unwrap_or(false) {
                tracing::info!("joined the Raft group as node {}", members.id);
                return Ok(());
            }
        }
        tracing::info!(
            "forming the Raft group of {} master(s) as node {}",
            members.nodes.len(),
            members.id
        );
        if let Err(e) = raft.initialize(members.nodes.clone()).await {
            // Another master's membership reached this one first: the group exists.
            tracing::debug!("initialize: {e}");
        }
        return Ok(());
    }
    let metrics = raft.metrics().borrow().clone();
    let stored: BTreeMap<NodeId, String> = metrics
        .membership_config
        .membership()
        .nodes()
        .map(|(id, node)| (*id, node.addr.clone()))
        .collect();
    let given: BTreeMap<NodeId, String> = members
        .nodes
        .iter()
        .map(|(id, node)| (*id, node.addr.clone()))
        .collect();
    if !stored.is_empty() && stored != given {
        tracing::warn!(
            "the Raft group stored in the data dir is {stored:?}, but --peers gives \
             {given:?}: the stored group stays (membership changes are not supported yet)"
        );
    }
    Ok(())
}

/// Publishes leadership and status until `stop`: every metrics change and every
/// [`CHECK_EVERY`], a leader asks a quorum to confirm it. Service ends when the lease
/// runs out: before a confirmation is awaited (a paused process wakes with an old
/// lease) and by bounding the wait to what is left of it.
async fn watch_leadership(
    node: &RaftNode<RegistryState>,
    members: &Members,
    strict: Duration,
    mut stop: watch::Receiver<bool>,
    leadership: watch::Sender<Leadership>,
    status: watch::Sender<RaftStatus>,
) {
    let raft = node.raft().clone();
    let mut metrics = raft.metrics();
    let mut confirmed: Option<(u64, Instant)> = None;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            changed = metrics.changed() => if changed.is_err() { break },
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let now = metrics.borrow_and_update().clone();
        publish(node, members, &now, confirmed, strict, &leadership, &status);
        let leading = now.state == ServerState::Leader && now.current_leader == Some(members.id);
        let due = confirmed
            .is_none_or(|(term, at)| term != now.current_term || at.elapsed() >= CHECK_EVERY);
        if leading && due {
            let left = confirmed
                .map_or(LEASE, |(_, at)| LEASE.saturating_sub(at.elapsed()))
                .max(CHECK_EVERY);
            let round = Instant::now();
            let confirm = tokio::time::timeout(left, raft.ensure_linearizable());
            tokio::select! {
                _ = stop.changed() => break,
                result = confirm => match result {
                    Ok(Ok(_)) => confirmed = Some((now.current_term, round)),
                    Ok(Err(e)) => tracing::debug!("leadership not confirmed: {e}"),
                    Err(_) => tracing::debug!("leadership not confirmed within {left:?}"),
                },
            }
        } else if !leading {
            confirmed = None;
        }
        let now = raft.metrics().borrow().clone();
        publish(node, members, &now, confirmed, strict, &leadership, &status);
    }
}

/// Whether this master serves given the metrics and its last confirmation, published.
fn publish(
    node: &RaftNode<RegistryState>,
    members: &Members,
    metrics: &fleet_raft::RaftMetrics,
    confirmed: Option<(u64, Instant)>,
    strict: Duration,
    leadership: &watch::Sender<Leadership>,
    status: &watch::Sender<RaftStatus>,
) {
    let serving = metrics.state == ServerState::Leader
        && metrics.current_leader == Some(members.id)
        && confirmed
            .is_some_and(|(term, at)| term == metrics.current_term && at.elapsed() <= LEASE);
    let leader = metrics
        .current_leader
        .filter(|id| *id != members.id)
        .and_then(|id| members.nodes.get(&id))
        .and_then(|node| node.addr.parse().ok());
    let until = confirmed.filter(|_| serving).map(|(_, at)| at + strict);
    let next = Leadership {
        serving,
        leader,
        until,
    };
    leadership.send_if_modified(|current| {
        if *current == next {
            return false;
        }
        if next.serving && !current.serving {
            tracing::info!(
                term = metrics.current_term,
                "this master leads the registry"
            );
        } else if current.serving && !next.serving {
            tracing::warn!(term = metrics.current_term, "this master no longer leads");
        }
        *current = next;
        true
    });
    let mut now = RaftStatus::of(metrics, serving, node.wal_stats(), node.wal_sync_latency());
    now.lease_until = until;
    status.send_replace(now);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ids_follow_the_sorted_peer_list() {
        let peers = [
            addr("127.0.0.1:7003"),
            addr("127.0.0.1:7001"),
            addr("127.0.0.1:7002"),
        ];
        let m = members(addr("127.0.0.1:7002"), &peers).unwrap();
        assert_eq!(m.id, 2);
        assert_eq!(m.nodes[&1].addr, "127.0.0.1:7001");
        assert_eq!(m.nodes[&3].addr, "127.0.0.1:7003");
        let wildcard = members(addr("0.0.0.0:7003"), &peers).unwrap();
        assert_eq!(wildcard.id, 3);
    }

    #[test]
    fn a_lone_master_is_its_own_group() {
        let m = members(addr("127.0.0.1:7001"), &[]).unwrap();
        assert_eq!(m.id, 1);
        assert_eq!(m.nodes.len(), 1);
    }

    #[test]
    fn bad_peer_lists_are_named() {
        let two = [addr("127.0.0.1:7001"), addr("127.0.0.1:7002")];
        let err = members(addr("127.0.0.1:7001"), &two).unwrap_err();
        assert!(err.contains("1, 3 or 5"), "{err}");
        let three = [
            addr("127.0.0.1:7001"),
            addr("127.0.0.1:7002"),
            addr("127.0.0.1:7003"),
        ];
        let err = members(addr("127.0.0.1:7009"), &three).unwrap_err();
        assert!(err.contains("does not name this master"), "{err}");
        let twice = [
            addr("127.0.0.1:7001"),
            addr("127.0.0.1:7001"),
            addr("127.0.0.1:7003"),
        ];
        let err = members(addr("127.0.0.1:7001"), &twice).unwrap_err();
        assert!(err.contains("twice"), "{err}");
    }
}
