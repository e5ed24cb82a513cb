//! `fleet bench raft`: registry writes through real fleet-raft nodes, against the
//! one-fsync-per-entry baseline measured in the same run.
//!
//! Every run starts fresh nodes in this process (1, then 3), each with its WAL and
//! snapshot in its own directory on the real disk (fsync on), connected by the masters'
//! Raft transport (QUIC on 127.0.0.1, mutual TLS; `--transport channel`: fleet-raft's
//! in-process channels instead, to compare), elects a leader and writes registry ops
//! (`AdmitAgent` of one of 1,024 agents, with its resources and attributes: the master's
//! commonest registry write, applied by the master's own `RegistryState`) from `clients`
//! concurrent callers, each waiting for its write to be committed and applied before the
//! next. Latency is per write, from the call to its answer. Fleet and the baseline run
//! over the same transport.
//!
//! - Fleet: the ops go through a [`Proposer`] (everything queued while earlier entries
//!   are in flight becomes one log entry of a [`Batched`] state) and every WAL syncs in
//!   group commit. (The master itself writes one op at a time and waits for it, so it
//!   does not batch yet: this is what the replicated log gives concurrent writers.)
//! - Baseline: one `client_write` per op (one op per entry) and `SyncMode::PerEntry` (one
//!   write and one fdatasync per entry): no batching and no group commit.
//! - Optionally (`unbatched`) group commit without the proposer, openraft as it comes:
//!   it shows how little group commit alone gives the leader.

mod cluster;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use cluster::RaftTransport;
use fleet_master::registry::{RegistryOp, RegistryState};
use fleet_proto::ids::AgentId;
use fleet_proto::messages::agent::AgentInfo;
use fleet_proto::resources::{Attributes, Resources};
pub use fleet_raft::ProposerConfig;
use fleet_raft::testing::{WriteLoad, run_writes};
use fleet_raft::{Apply, Batched, NodeConfig, Proposer, RaftNode};
use fleet_wal::{SyncMode, WalStats};
use hdrhistogram::Histogram;
use serde::Serialize;

use self::cluster::Cluster;
use crate::BenchError;

/// What the issue asks of three masters on one machine.
pub const TARGET_WRITES_PER_SECOND: f64 = 50_000.0;
pub const TARGET_P99_MS: f64 = 5.0;

const ELECTION: Duration = Duration::from_secs(10);
/// fdatasyncs of the disk probe, each after a 4 KiB append.
const DISK_PROBE_SYNCS: u32 = 500;

#[derive(Clone, Debug)]
pub struct RaftOptions {
    /// Writes in each Fleet run.
    pub writes: u64,
    /// Writes in each baseline (and unbatched) run: it is 20 to 30 times slower.
    pub baseline_writes: u64,
    /// Concurrent callers, each with one write outstanding.
    pub clients: usize,
    /// Cluster sizes, each run in turn.
    pub nodes: Vec<usize>,
    /// Where the nodes' directories go (a temporary directory is made inside).
    pub dir: PathBuf,
    pub proposer: ProposerConfig,
    /// Also run group commit without the proposer.
    pub unbatched: bool,
    /// How the nodes talk (QUIC unless asked otherwise).
    pub transport: RaftTransport,
}

impl Default for RaftOptions {
    fn default() -> Self {
        RaftOptions {
            writes: 100_000,
            baseline_writes: 10_000,
            clients: 128,
            nodes: vec![1, 3],
            dir: std::env::temp_dir(),
            proposer: ProposerConfig::default(),
            unbatched: false,
            transport: RaftTransport::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Proposer batching and WAL group commit.
    Fleet,
    /// One op per entry, one fsync per entry.
    Baseline,
    /// One op per entry, WAL group commit.
    Unbatched,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Fleet => "Fleet",
            Mode::Baseline => "baseline",
            Mode::Unbatched => "group commit only",
        }
    }
}

/// Commit latency percentiles, in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RaftRun {
    pub nodes: usize,
    pub mode: Mode,
    pub writes: u64,
    pub seconds: f64,
    pub writes_per_second: f64,
    pub latency: Latency,
    /// Log entries the leader's WAL wrote during the run.
    pub leader_entries: u64,
    /// fdatasync/fsync calls of the leader's WAL during the run.
    pub leader_fsyncs: u64,
    pub fsyncs_per_entry: f64,
    pub writes_per_fsync: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub nodes: usize,
    /// Fleet's writes/s over the baseline's.
    pub writes_per_second: f64,
    pub fleet_p99_us: u64,
    pub baseline_p99_us: u64,
}

/// What the disk under the WAL directories does alone: fdatasync after a 4 KiB append,
/// timed before the runs. The floor under every commit, and most of its tail.
#[derive(Clone, Debug, Serialize)]
pub struct DiskProbe {
    pub syncs: u32,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RaftResults {
    /// `quic` or `channel`.
    pub transport: RaftTransport,
    /// The transport in words, as the table's header has it.
    pub transport_detail: String,
    pub dir: String,
    pub disk: DiskProbe,
    pub clients: usize,
    pub max_batch: usize,
    pub max_in_flight: usize,
    pub runs: Vec<RaftRun>,
    pub ratios: Vec<Ratio>,
    /// Whether 3 nodes reached the target (None without a 3-node Fleet run).
    pub target_met: Option<bool>,
}

/// Runs the bench; `progress(done, total, what)` hears about each run.
pub fn run(
    options: &RaftOptions,
    mut progress: impl FnMut(u64, u64, &str),
) -> Result<RaftResults, BenchError> {
    if options.writes == 0 || options.baseline_writes == 0 || options.clients == 0 {
        return Err(BenchError::Option(
            "--writes, --baseline-writes and --clients must be at least 1".into(),
        ));
    }
    if options.nodes.is_empty() || options.nodes.contains(&0) {
        return Err(BenchError::Option(format!(
            "--nodes {:?}: need at least one cluster size, each at least 1",
            options.nodes
        )));
    }
    let dir = tempfile::Builder::new()
        .prefix("fleet-bench-raft-")
        .tempdir_in(&options.dir)
        .map_err(|source| BenchError::Io {
            what: format!("a temporary directory in {}", options.dir.display()),
            source,
        })?;
    let mut modes = vec![Mode::Fleet, Mode::Baseline];
    if options.unbatched {
        modes.push(Mode::Unbatched);
    }
    let total = (options.nodes.len() * modes.len()) as u64;
    progress(0, total, "timing the disk's fdatasync");
    let disk = probe_disk(dir.path())?;
    let rt = crate::sim_agents::load_runtime()?;
    let mut runs = Vec::new();
    for &nodes in &options.nodes {
        for &mode in &modes {
            let what = format!("{nodes} node(s), {}", mode.label());
            progress(runs.len() as u64, total, &what);
            let base = dir.path().join(format!("{nodes}-{mode:?}"));
            let run = rt.block_on(run_one(&base, nodes, mode, options))?;
            // Each run's directories go before the next starts.
            std::fs::remove_dir_all(&base).map_err(|source| BenchError::Io {
                what: format!("removing {}", base.display()),
                source,
            })?;
            runs.push(run);
        }
    }
    progress(total, total, "done");
    let ratios: Vec<Ratio> = options
        .nodes
        .iter()
        .filter_map(|&nodes| {
            let fleet = runs
                .iter()
                .find(|r| r.nodes == nodes && r.mode == Mode::Fleet)?;
            let baseline = runs
                .iter()
                .find(|r| r.nodes == nodes && r.mode == Mode::Baseline)?;
            Some(Ratio {
                nodes,
                writes_per_second: fleet.writes_per_second
                    / baseline.writes_per_second.max(f64::MIN_POSITIVE),
                fleet_p99_us: fleet.latency.p99_us,
                baseline_p99_us: baseline.latency.p99_us,
            })
        })
        .collect();
    let target_met = runs
        .iter()
        .find(|r| r.nodes == 3 && r.mode == Mode::Fleet)
        .map(|r| {
            r.writes_per_second >= TARGET_WRITES_PER_SECOND
                && r.latency.p99_us as f64 <= TARGET_P99_MS * 1e3
        });
    Ok(RaftResults {
        transport: options.transport,
        transport_detail: options.transport.describe().into(),
        dir: options.dir.display().to_string(),
        disk,
        clients: options.clients,
        max_batch: options.proposer.max_batch,
        max_in_flight: options.proposer.max_in_flight,
        runs,
        ratios,
        target_met,
    })
}

fn probe_disk(dir: &Path) -> Result<DiskProbe, BenchError> {
    use std::io::Write;
    let path = dir.join("disk-probe");
    let io = |source| BenchError::Io {
        what: format!("timing fdatasync on {}", path.display()),
        source,
    };
    let mut file = std::fs::File::create(&path).map_err(io)?;
    let block = [0x5a_u8; 4096];
    let mut latency = histogram()?;
    for _ in 0..DISK_PROBE_SYNCS {
        file.write_all(&block).map_err(io)?;
        let started = Instant::now();
        file.sync_data().map_err(io)?;
        latency.saturating_record(started.elapsed().as_micros() as u64);
    }
    drop(file);
    std::fs::remove_file(&path).map_err(io)?;
    Ok(DiskProbe {
        syncs: DISK_PROBE_SYNCS,
        p50_us: latency.value_at_quantile(0.5),
        p99_us: latency.value_at_quantile(0.99),
        max_us: latency.max(),
    })
}

/// The `i`th write: agent `i % 1024` (re-)admitted, as a registering agent is.
fn op(i: u64) -> RegistryOp {
    let agent = i % 1024;
    RegistryOp::AdmitAgent {
        id: AgentId(format!("A-{agent:016x}")),
        info: AgentInfo {
            hostname: format!("agent-{agent}.rack-{}.example", agent % 32),
            http_address: format!("10.0.{}.{}:5051", agent / 256, agent % 256),
            resources: Resources::parse("cpus:16;mem:65536;disk:1000000;ports:[31000-32000]")
                .unwrap_or_default(),
            attributes: Attributes::parse(&format!("rack:r{};zone:z{}", agent % 32, agent % 3))
                .unwrap_or_default(),
        },
    }
}

fn raft_error(e: impl std::fmt::Display) -> BenchError {
    BenchError::Sim {
        what: "Raft cluster".into(),
        reason: e.to_string(),
    }
}

async fn run_one(
    base: &Path,
    nodes: usize,
    mode: Mode,
    options: &RaftOptions,
) -> Result<RaftRun, BenchError> {
    let (writes, (elapsed, latency_us, wal)) = match mode {
        Mode::Fleet => {
            let (writes, clients, proposer) = (options.writes, options.clients, options.proposer);
            let load = move |raft| proposed_writes(raft, proposer, writes, clients);
            let measured = on_cluster::<Batched<RegistryState>, _, _>(
                base,
                nodes,
                SyncMode::GroupCommit,
                options.transport,
                load,
            );
            (writes, measured.await?)
        }
        Mode::Baseline | Mode::Unbatched => {
            let sync = if mode == Mode::Baseline {
                SyncMode::PerEntry
            } else {
                SyncMode::GroupCommit
            };
            let load = WriteLoad {
                writes: options.baseline_writes,
                clients: options.clients,
            };
            let measured = on_cluster::<RegistryState, _, _>(
                base,
                nodes,
                sync,
                options.transport,
                move |raft| async move {
                    let report = run_writes(&raft, load, op).await.map_err(raft_error)?;
                    Ok((report.elapsed, report.latency_us))
                },
            );
            (load.writes, measured.await?)
        }
    };
    let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
    Ok(RaftRun {
        nodes,
        mode,
        writes,
        seconds,
        writes_per_second: writes as f64 / seconds,
        latency: Latency {
            p50_us: latency_us.value_at_quantile(0.5),
            p99_us: latency_us.value_at_quantile(0.99),
            max_us: latency_us.max(),
        },
        leader_entries: wal.entries,
        leader_fsyncs: wal.syncs,
        fsyncs_per_entry: wal.syncs as f64 / wal.entries.max(1) as f64,
        writes_per_fsync: writes as f64 / wal.syncs.max(1) as f64,
    })
}

fn histogram() -> Result<Histogram<u64>, BenchError> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| BenchError::Histogram(e.to_string()))
}

/// Starts `nodes` nodes of `A` (every WAL syncing as `sync`) over `transport`, runs
/// `load` on the leader and stops them: the load's time and latencies in microseconds,
/// and the leader's WAL counters over the load.
async fn on_cluster<A, F, Fut>(
    base: &Path,
    nodes: usize,
    sync: SyncMode,
    transport: RaftTransport,
    load: F,
) -> Result<(Duration, Histogram<u64>, WalStats), BenchError>
where
    A: Apply,
    F: FnOnce(fleet_raft::Raft<A>) -> Fut,
    Fut: Future<Output = Result<(Duration, Histogram<u64>), BenchError>>,
{
    let mut config = NodeConfig::default();
    config.wal.sync = sync;
    let (cluster, leader_id) =
        Cluster::<A>::start(transport, base, nodes, config, ELECTION).await?;
    let leader = cluster
        .node(leader_id)
        .ok_or_else(|| raft_error(format!("leader {leader_id} is not running")))?;
    let before = wal_stats(leader);
    let measured = load(leader.raft().clone()).await;
    let after = wal_stats(leader);
    cluster.shutdown().await?;
    let (elapsed, latency_us) = measured?;
    let wal = WalStats {
        rounds: after.rounds - before.rounds,
        syncs: after.syncs - before.syncs,
        entries: after.entries - before.entries,
        bytes: after.bytes - before.bytes,
    };
    Ok((elapsed, latency_us, wal))
}

fn wal_stats<A: Apply>(node: &RaftNode<A>) -> WalStats {
    node.wal_stats().unwrap_or_default()
}

/// `writes` writes from `clients` callers through a [`Proposer`] on the leader `raft`.
async fn proposed_writes(
    raft: fleet_raft::Raft<Batched<RegistryState>>,
    config: ProposerConfig,
    writes: u64,
    clients: usize,
) -> Result<(Duration, Histogram<u64>), BenchError> {
    let proposer = Proposer::start(raft, config);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let (proposer, next) = (proposer.clone(), Arc::clone(&next));
        let mut latency = histogram()?;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= writes {
                    return Ok::<_, BenchError>(latency);
                }
                let sent = Instant::now();
                proposer
                    .propose(op(i))
                    .await
                    .map_err(|e| raft_error(format!("write {i}: {e}")))?;
                latency.saturating_record(sent.elapsed().as_micros() as u64);
            }
        }));
    }
    let mut latency_us = histogram()?;
    for task in tasks {
        let client = task.await.map_err(raft_error)??;
        latency_us
            .add(&client)
            .map_err(|e| BenchError::Histogram(e.to_string()))?;
    }
    Ok((started.elapsed(), latency_us))
}

pub fn table(r: &RaftResults) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Registry writes through fleet-raft (openraft 0.9): transport {}, each node's WAL \
         in its own directory under {} (fsync on), {} clients\n\
         Fleet: proposer (at most {} ops per entry, {} in flight) + WAL group commit; \
         baseline: one op per entry, one fsync per entry (SyncMode::PerEntry)\n",
        r.transport_detail, r.dir, r.clients, r.max_batch, r.max_in_flight
    );
    let _ = writeln!(
        out,
        "{:>5}  {:<18} {:>8} {:>10} {:>8} {:>8} {:>8} {:>13} {:>13}",
        "nodes",
        "mode",
        "writes",
        "writes/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "fsyncs/entry",
        "writes/fsync"
    );
    for run in &r.runs {
        let _ = writeln!(
            out,
            "{:>5}  {:<18} {:>8} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>13.2} {:>13.1}",
            run.nodes,
            run.mode.label(),
            run.writes,
            run.writes_per_second,
            run.latency.p50_us as f64 / 1e3,
            run.latency.p99_us as f64 / 1e3,
            run.latency.max_us as f64 / 1e3,
            run.fsyncs_per_entry,
            run.writes_per_fsync
        );
    }
    let _ = writeln!(
        out,
        "\nlatency: propose -> committed and applied on the leader; fsyncs: the leader's WAL\n\
         disk alone: fdatasync after a 4 KiB append p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms \
         ({} syncs)",
        r.disk.p50_us as f64 / 1e3,
        r.disk.p99_us as f64 / 1e3,
        r.disk.max_us as f64 / 1e3,
        r.disk.syncs
    );
    let ratios: Vec<String> = r
        .ratios
        .iter()
        .map(|ratio| format!("{} node(s) {:.1}x", ratio.nodes, ratio.writes_per_second))
        .collect();
    let _ = writeln!(out, "writes/s, Fleet / baseline: {}", ratios.join(", "));
    if let (Some(met), Some(run)) = (
        r.target_met,
        r.runs
            .iter()
            .find(|x| x.nodes == 3 && x.mode == Mode::Fleet),
    ) {
        let _ = writeln!(
            out,
            "target, 3 masters: >= {:.0} writes/s and p99 <= {TARGET_P99_MS} ms: {} \
             ({:.0} writes/s, p99 {:.2} ms)",
            TARGET_WRITES_PER_SECOND,
            if met { "met" } else { "not met" },
            run.writes_per_second,
            run.latency.p99_us as f64 / 1e3
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three nodes over the masters' QUIC transport take both workloads, and every
    /// node's directory is gone afterwards.
    #[test]
    fn three_nodes_over_quic() {
        let dir = tempfile::tempdir().unwrap();
        let options = RaftOptions {
            writes: 400,
            baseline_writes: 40,
            clients: 8,
            nodes: vec![3],
            dir: dir.path().to_path_buf(),
            ..RaftOptions::default()
        };
        let r = run(&options, |_, _, _| {}).unwrap();
        assert_eq!(r.transport, RaftTransport::Quic);
        assert_eq!(r.runs.len(), 2, "{r:?}");
        let fleet = &r.runs[0];
        assert_eq!(
            (fleet.nodes, fleet.mode, fleet.writes),
            (3, Mode::Fleet, 400)
        );
        assert!(fleet.writes_per_fsync > 1.0, "{fleet:?}");
        assert!(r.runs[1].writes_per_fsync <= 1.0, "{r:?}");
        assert!(table(&r).contains("transport QUIC on 127.0.0.1"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
