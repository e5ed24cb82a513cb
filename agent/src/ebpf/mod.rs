//! Loads and attaches the programs built from ebpf/, pins their maps in bpffs, and reads
//! per-container counters keyed by cgroup2 id.

mod devices;
mod disk;
#[cfg(test)]
mod disk_tests;
mod error;
mod fs;
mod net;
mod ports;
mod probes;
#[cfg(test)]
mod tests;

pub use error::EbpfError;
pub use fleet_ebpf_common::CgroupCounters;
pub use fs::{BPFFS_ROOT, TRACEFS_ROOT, cgroup_id_of};
pub use probes::{UsageProbes, default_pin_dir};
