//! Criterion view of the allocator: one full cycle over simulated clusters of agents x
//! frameworks, for the two workloads of `fleet_bench::sim`. Only `allocate` is timed; the
//! frameworks' answers run off the clock. Throughput is in agents, so criterion prints the
//! per-agent rate that the 1,000-agent case is the baseline of.
//! `cargo bench -p fleet-bench --bench allocator`.

// Benchmarks run on inputs built in this process; a failure there is a bug to see at once.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use fleet_bench::sim::{ClusterSpec, SimCluster, Workload};
use fleet_master::allocator::Allocator;

const SCALES: [ClusterSpec; 3] = [
    ClusterSpec::new(1_000, 10, 2),
    ClusterSpec::new(1_000, 100, 10),
    ClusterSpec::new(10_000, 100, 10),
];

fn cycles(c: &mut Criterion) {
    for workload in [Workload::DeclineAll, Workload::AcceptPart] {
        let mut group = c.benchmark_group(format!("allocate_{}", workload.name()));
        // A 10,000-agent cycle takes seconds: flat sampling keeps the run to about
        // ten cycles per case instead of criterion's 1 + 2 + ... + 10.
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(5));
        for spec in SCALES {
            let mut cluster = SimCluster::<Allocator>::prepared(spec, workload).unwrap();
            group.throughput(Throughput::Elements(spec.agents as u64));
            group.bench_function(BenchmarkId::from_parameter(spec), |b| {
                b.iter_custom(|iters| {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        let offers = cluster.cycle();
                        timed += start.elapsed();
                        cluster.answer(offers, workload).unwrap();
                    }
                    timed
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, cycles);
criterion_main!(benches);
