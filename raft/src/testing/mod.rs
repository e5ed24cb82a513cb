//! What tests and benchmarks of a replicated state need: a small application state
//! ([`KeyValue`]), a cluster of nodes in one process ([`InProcessCluster`]), and write
//! load with throughput and latency ([`run_writes`], [`run_write_bench`]).

mod cluster;
mod kv;
mod load;

pub use cluster::InProcessCluster;
pub use kv::{KeyValue, KvOp};
pub use load::{WriteBench, WriteLoad, WriteReport, run_write_bench, run_writes};
