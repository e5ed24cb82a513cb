//! v2 `cpu` controller: `cpu.weight` for the proportional share, `cpu.max` for the hard
//! cap; CPU time from `cpu.stat`.

use std::path::Path;

use crate::cgroups::controller::{CPU_PERIOD_US, Controller, Limits, cpu_quota_us, cpu_weight};
use crate::cgroups::fs;
use crate::error::AgentError;

pub struct Cpu;

impl Controller for Cpu {
    const NAME: &'static str = "cpu";

    fn apply(dir: &Path, limits: &Limits) -> Result<(), AgentError> {
        fs::write(
            dir,
            "cpu.weight",
            &cpu_weight(limits.cpus_milli).to_string(),
        )?;
        if let Some(quota) = cpu_quota_us(limits.cpus_milli) {
            fs::write(dir, "cpu.max", &format!("{quota} {CPU_PERIOD_US}"))?;
        }
        Ok(())
    }
}

/// CPU time used by every task of the cgroup, in nanoseconds (`usage_usec` in cpu.stat,
/// which exists even without the cpu controller enabled).
pub fn usage_ns(dir: &Path) -> Result<u64, AgentError> {
    let usec = fs::read_keyed(dir, "cpu.stat", "usage_usec")?.ok_or_else(|| {
        AgentError::CgroupContent {
            path: dir.join("cpu.stat"),
            content: "no usage_usec".to_string(),
        }
    })?;
    Ok(usec.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_cpu() {
        let dir = tempfile::tempdir().unwrap();
        Cpu::apply(
            dir.path(),
            &Limits {
                cpus_milli: 500,
                ..Limits::default()
            },
        )
        .unwrap();
        assert_eq!(fs::read(dir.path(), "cpu.max").unwrap(), "50000 100000");
        assert_eq!(fs::read(dir.path(), "cpu.weight").unwrap(), "20");
    }

    #[test]
    fn reads_usage_in_ns() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\n",
        )
        .unwrap();
        assert_eq!(usage_ns(dir.path()).unwrap(), 1_500_000);
    }
}
