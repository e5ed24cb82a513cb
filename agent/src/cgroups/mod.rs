//! Container cgroups on v1/hybrid and v2 hosts: layout detection, one small file per
//! controller under `v1/` and `v2/`, and `ContainerCgroup`, the dispatch over both.

mod container;
mod controller;
pub mod fs;
mod layout;
pub mod v1;
pub mod v2;

pub use container::{ContainerCgroup, ContainerUsage};
pub use controller::{Controller, GpuAccess, Limits, cpu_quota_us, cpu_shares, cpu_weight};
pub use fs::join_before_exec;
pub use layout::{DEFAULT_MOUNT, Layout};
