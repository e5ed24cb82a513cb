//! Fleet's benchmarks and load generator: realistic wire messages, a simulated cluster for
//! the allocator, and quick measurements that print every figure next to a baseline timed
//! in the same run (absolute times on a shared 2-core machine move from run to run; ratios
//! move much less).
//!
//! The criterion benches (`benches/`) are the detailed view; [`ratios::run`] is the quick
//! one, meant for `fleet bench` and `cargo run -p fleet-bench --release --example ratios`.

pub mod allocator_grid;
pub mod master_process;
pub mod measure;
pub mod mesos_drf;
pub mod offer_rate;
pub mod raft_bench;
pub mod ratios;
pub mod report_rate;
pub mod reports;
pub mod sim;
pub mod sim_agents;
pub mod usage;

use fleet_proto::frame::FrameError;
use fleet_proto::resources::ResourceError;

/// What can go wrong while setting up or running a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid resources '{text}' in a simulated cluster: {source}")]
    Resources { text: String, source: ResourceError },
    #[error("frame error in a benchmark workload: {0}")]
    Frame(#[from] FrameError),
    #[error("JSON baseline failed: {0}")]
    Json(#[from] serde_json::Error),
    #[error("allocator refused a simulated operation: {0}")]
    Allocator(#[from] fleet_master::allocator::AllocatorError),
    #[error("invalid histogram bounds: {0}")]
    Histogram(String),
    #[error("invalid benchmark option: {0}")]
    Option(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("simulated {what}: {reason}")]
    Sim { what: String, reason: String },
}
