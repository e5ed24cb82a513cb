//! What a master tells operators about its Raft node: `/raft` (JSON, for `fleet status`)
//! and the `fleet_master_raft_*` series of `/metrics`, computed from openraft's metrics.

use std::fmt::Write;

use fleet_raft::{NodeId, RaftMetrics};
use openraft::ServerState;

use crate::registry::{COMMIT_BUCKETS_US, CommitTimes};

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Member {
    pub id: NodeId,
    pub address: String,
}

/// One master's view of the Raft group.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RaftStatus {
    pub id: NodeId,
    pub address: String,
    /// leader, follower, candidate, learner or shutdown.
    pub role: String,
    /// Leads with a fresh quorum's confirmation and runs the core.
    pub serving: bool,
    pub term: u64,
    pub leader_id: Option<NodeId>,
    pub leader_address: Option<String>,
    pub last_log_index: Option<u64>,
    /// On the leader, the highest index a quorum holds; elsewhere openraft 0.9 does not
    /// say, and this is the last applied index (applying follows commit at once).
    pub commit_index: Option<u64>,
    pub last_applied: Option<u64>,
    /// Committed entries not yet applied.
    pub apply_lag: u64,
    pub snapshot_index: Option<u64>,
    pub members: Vec<Member>,
    /// The log WAL's counters: writer rounds, fsyncs, entries and bytes written.
    pub wal_rounds: u64,
    pub wal_syncs: u64,
    pub wal_entries: u64,
    pub wal_bytes: u64,
    /// How long the log WAL's fsyncs took (for /metrics).
    #[serde(skip)]
    pub wal_sync_latency: fleet_wal::SyncLatency,
    /// When `serving` runs out unless confirmed again.
    #[serde(skip)]
    pub lease_until: Option<std::time::Instant>,
}

fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// The index a majority of `voters` holds, from the leader's replication progress.
fn quorum_index(metrics: &RaftMetrics) -> Option<u64> {
    let progress = metrics.replication.as_ref()?;
    let membership = metrics.membership_config.membership();
    let mut matched: Vec<u64> = membership
        .voter_ids()
        .map(|id| {
            progress
                .get(&id)
                .copied()
                .flatten()
                .map(|log| log.index)
                .or(if id == metrics.id {
                    metrics.last_log_index
                } else {
                    None
                })
                .unwrap_or(0)
        })
        .collect();
    if matched.is_empty() {
        return None;
    }
    matched.sort_unstable_by(|a, b| b.cmp(a));
    matched.get(matched.len() / 2).copied()
}

impl RaftStatus {
    pub fn of(
        metrics: &RaftMetrics,
        serving: bool,
        wal: Option<fleet_wal::WalStats>,
        wal_sync_latency: Option<fleet_wal::SyncLatency>,
    ) -> Self {
        let nodes = metrics.membership_config.membership();
        let members: Vec<Member> = nodes
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                address: node.addr.clone(),
            })
            .collect();
        let address_of = |id: NodeId| {
            members
                .iter()
                .find(|m| m.id == id)
                .map(|m| m.address.clone())
        };
        let last_applied = metrics.last_applied.map(|log| log.index);
        let commit_index = match metrics.state {
            ServerState::Leader => quorum_index(metrics).or(last_applied),
            _ => last_applied,
        };
        let wal = wal.unwrap_or_default();
        RaftStatus {
            id: metrics.id,
            address: address_of(metrics.id).unwrap_or_default(),
            role: role(metrics.state).to_owned(),
            serving,
            term: metrics.current_term,
            leader_id: metrics.current_leader,
            leader_address: metrics.current_leader.and_then(address_of),
            last_log_index: metrics.last_log_index,
            commit_index,
            last_applied,
            apply_lag: commit_index
                .unwrap_or(0)
                .saturating_sub(last_applied.unwrap_or(0)),
            snapshot_index: metrics.snapshot.map(|log| log.index),
            members,
            wal_rounds: wal.rounds,
            wal_syncs: wal.syncs,
            wal_entries: wal.entries,
            wal_bytes: wal.bytes,
            wal_sync_latency: wal_sync_latency.unwrap_or_default(),
            lease_until: None,
        }
    }
}

/// The `fleet_master_raft_*` series: gauges of the node's position, the commit-latency
/// histogram and the WAL's counters.
pub fn render(status: &RaftStatus, times: &CommitTimes) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    };
    let index = |i: Option<u64>| i.map_or(-1.0, |i| i as f64);
    gauge(
        "fleet_master_raft_term",
        "Current Raft term of this master.",
        status.term as f64,
    );
    gauge(
        "fleet_master_raft_is_leader",
        "1 while this master leads and serves.",
        if status.serving { 1.0 } else { 0.0 },
    );
    gauge(
        "fleet_master_raft_last_log_index",
        "Index of the last entry in this master's log (-1: none).",
        index(status.last_log_index),
    );
    gauge(
        "fleet_master_raft_commit_index",
        "Highest index a quorum holds (on followers: the last applied).",
        index(status.commit_index),
    );
    gauge(
        "fleet_master_raft_last_applied",
        "Index of the last entry applied to the registry (-1: none).",
        index(status.last_applied),
    );
    gauge(
        "fleet_master_raft_apply_lag",
        "Committed entries not yet applied to the registry.",
        status.apply_lag as f64,
    );
    gauge(
        "fleet_master_raft_members",
        "Masters in the Raft group.",
        status.members.len() as f64,
    );
    let (counts, sum_us, failed) = times.read();
    histogram(
        &mut out,
        "fleet_master_raft_commit_seconds",
        "Registry writes from proposal to commit and apply on this leader (a quorum's WAL \
         fsync plus a round trip).",
        &COMMIT_BUCKETS_US,
        &counts,
        sum_us,
    );
    let syncs = &status.wal_sync_latency;
    histogram(
        &mut out,
        "fleet_master_raft_wal_fsync_seconds",
        "fdatasyncs of the Raft log's WAL segments and fsyncs of its directory.",
        &fleet_wal::SYNC_BUCKETS_US,
        &syncs.counts,
        syncs.sum_us,
    );
    for (metric, help, value) in [
        (
            "fleet_master_raft_write_failures_total",
            "Registry writes that failed or timed out.",
            failed,
        ),
        (
            "fleet_master_raft_wal_syncs_total",
            "fsyncs of the Raft log's WAL.",
            status.wal_syncs,
        ),
        (
            "fleet_master_raft_wal_entries_total",
            "Entries written to the Raft log's WAL.",
            status.wal_entries,
        ),
        (
            "fleet_master_raft_wal_bytes_total",
            "Record bytes written to the Raft log's WAL.",
            status.wal_bytes,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {metric} {help}\n# TYPE {metric} counter\n{metric} {value}"
        );
    }
    out
}

/// A Prometheus histogram from per-bucket counts (not cumulative; one more than `bounds`
/// for the rest) over bounds in microseconds.
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[u64],
    counts: &[u64],
    sum_us: u64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (bound, count) in bounds.iter().zip(counts) {
        cumulative += count;
        let le = *bound as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let total: u64 = counts.iter().sum();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "{name}_sum {}", sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {total}");
}
