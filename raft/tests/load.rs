//! The write-load helper benchmarks use: a 1-node and a 3-node cluster, group commit and
//! the per-entry baseline, each returning throughput, latencies and the leader's WAL
//! counters. Small numbers: this checks the helper, the benchmark measures.

use fleet_raft::testing::{WriteBench, WriteLoad, run_write_bench};
use fleet_wal::SyncMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_bench_reports_throughput_latency_and_group_commit() {
    for (nodes, sync) in [
        (1, SyncMode::GroupCommit),
        (1, SyncMode::PerEntry),
        (3, SyncMode::GroupCommit),
    ] {
        let base = tempfile::tempdir().unwrap();
        let load = WriteLoad {
            writes: 300,
            clients: 16,
        };
        let report = run_write_bench(base.path(), WriteBench { nodes, load, sync })
            .await
            .unwrap();
        let wal = report.leader_wal.unwrap();
        println!(
            "{nodes} node(s), {sync:?}: {:.0} writes/s, p50 {} us, p99 {} us, {:.1} entries per WAL round",
            report.writes_per_sec(),
            report.latency_us.value_at_quantile(0.5),
            report.latency_us.value_at_quantile(0.99),
            wal.entries as f64 / wal.rounds.max(1) as f64,
        );
        assert_eq!(report.latency_us.len(), 300);
        assert!(wal.entries >= 300, "{wal:?}");
        if sync == SyncMode::PerEntry {
            assert!(
                wal.syncs >= wal.entries,
                "per-entry mode syncs every entry: {wal:?}"
            );
        }
    }
}
