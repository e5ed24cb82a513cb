//! Device isolation: the cgroup_device program attached at the agent's cgroup2 root, and the map of GPU minors each container may open.

use std::path::Path;

use aya::Ebpf;

use super::error::EbpfError;
use crate::containerizer::ContainerSpec;

/// The device isolation program and its map.
#[derive(Debug)]
pub(super) struct Devices {}

impl Devices {
    /// Loads and attaches its programs from `object` (attached at the agent's cgroup2 root) and opens its maps.
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
