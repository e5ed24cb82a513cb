//! The vocabulary shared by the v1 and v2 controllers: a container's limits, the
//! `Controller` trait, and the unit conversions both hierarchies use. Imports none of its
//! siblings.

use std::path::Path;

use crate::error::AgentError;

/// The period of the CFS bandwidth cap, in microseconds (the kernel's default).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel accepts, in microseconds.
const CPU_MIN_QUOTA_US: u64 = 1_000;

/// What a container may use. Zero `cpus_milli` or `mem_bytes` means "no limit" for that
/// resource; `pids_max: None` means no pids limit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Limits {
    /// CPUs in thousandths: 500 is half a CPU; sets both the share and the hard cap.
    pub cpus_milli: u64,
    /// Memory hard limit in bytes (swap is not allowed beyond it).
    pub mem_bytes: u64,
    /// The most tasks (processes and threads) the container may hold.
    pub pids_max: Option<u64>,
    /// GPU device rules for the v1 devices controller; `None`: no rules.
    pub gpus: Option<GpuAccess>,
}

/// The GPUs a container may open (minors of /dev/nvidia<N>) and the agent's GPU control
/// devices (major, minor), allowed only with a GPU.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GpuAccess {
    pub minors: Vec<u32>,
    pub control: Vec<(u32, u32)>,
}

/// One cgroup controller: writes a container's limits into its directory.
pub trait Controller {
    /// The controller's name: its v1 hierarchy directory, its v2 `subtree_control` token.
    const NAME: &'static str;

    /// Writes the limits this controller enforces into the cgroup directory `dir`.
    fn apply(dir: &Path, limits: &Limits) -> Result<(), AgentError>;
}

/// v1 `cpu.shares`: 1024 per CPU, at least the kernel's minimum of 2.
pub fn cpu_shares(cpus_milli: u64) -> u64 {
    (cpus_milli.saturating_mul(1024) / 1000).max(2)
}

/// The CFS quota per `CPU_PERIOD_US` for a hard cap of `cpus_milli`; `None` for no cap.
pub fn cpu_quota_us(cpus_milli: u64) -> Option<u64> {
    (cpus_milli > 0)
        .then(|| (cpus_milli.saturating_mul(CPU_PERIOD_US) / 1000).max(CPU_MIN_QUOTA_US))
}

/// v2 `cpu.weight` (1..=10000) from v1 shares (2..=262144), the mapping runc and systemd use.
pub fn cpu_weight(cpus_milli: u64) -> u64 {
    let shares = cpu_shares(cpus_milli).min(262_144);
    1 + ((shares - 2) * 9_999) / 262_142
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_quota_follow_cpus() {
        assert_eq!(cpu_shares(1000), 1024);
        assert_eq!(cpu_shares(500), 512);
        assert_eq!(cpu_shares(0), 2);
        assert_eq!(cpu_quota_us(500), Some(50_000));
        assert_eq!(cpu_quota_us(2500), Some(250_000));
        assert_eq!(cpu_quota_us(1), Some(1_000));
        assert_eq!(cpu_quota_us(0), None);
    }

    #[test]
    fn weight_stays_in_range() {
        assert_eq!(cpu_weight(0), 1);
        assert_eq!(cpu_weight(1000), 39);
        assert_eq!(cpu_weight(u64::MAX), 10_000);
    }
}
