//! Disk accounting: the ext4 tracepoint programs and the maps of inode ownership and per-container disk space.

use std::path::Path;

use aya::Ebpf;

use super::error::EbpfError;
use crate::containerizer::ContainerSpec;

/// The disk accounting programs and their maps.
#[derive(Debug)]
pub(super) struct Disk {}

impl Disk {
    /// Loads and attaches its programs from `object` (on the ext4 tracepoints) and opens its maps.
    pub(super) fn load(_object: &mut Ebpf, _cgroup2_root: &Path) -> Result<Self, EbpfError> {
        Ok(Self {})
    }

    /// Starts enforcing and counting for the container `spec` in cgroup `cgroup_id`,
    /// before any of its processes runs.
    pub(super) fn admit(&self, _cgroup_id: u64, _spec: &ContainerSpec) -> Result<(), EbpfError> {
        Ok(())
    }

    /// Forgets the cgroup `cgroup_id` once its container has ended.
    pub(super) fn forget(&self, _cgroup_id: u64) -> Result<(), EbpfError> {
        Ok(())
    }
}
