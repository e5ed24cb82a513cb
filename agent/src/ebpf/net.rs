//! Network accounting: the cgroup_skb ingress/egress programs attached at the agent's cgroup2 root, counting bytes per container cgroup.

use std::path::Path;

use aya::Ebpf;

use super::error::EbpfError;
use crate::containerizer::ContainerSpec;

/// The network counting programs.
#[derive(Debug)]
pub(super) struct Net {}

impl Net {
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
