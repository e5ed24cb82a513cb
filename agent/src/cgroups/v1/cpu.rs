//! v1 `cpu` controller: `cpu.shares` for the proportional share, `cpu.cfs_quota_us` over
//! `cpu.cfs_period_us` for the hard cap.

use std::path::Path;

use crate::cgroups::controller::{CPU_PERIOD_US, Controller, Limits, cpu_quota_us, cpu_shares};
use crate::cgroups::fs;
use crate::error::AgentError;

pub struct Cpu;

impl Controller for Cpu {
    const NAME: &'static str = "cpu";

    fn apply(dir: &Path, limits: &Limits) -> Result<(), AgentError> {
        fs::write(
            dir,
            "cpu.shares",
            &cpu_shares(limits.cpus_milli).to_string(),
        )?;
        if let Some(quota) = cpu_quota_us(limits.cpus_milli) {
            fs::write(dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
            fs::write(dir, "cpu.cfs_quota_us", &quota.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_cpu() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            cpus_milli: 500,
            ..Limits::default()
        };
        Cpu::apply(dir.path(), &limits).unwrap();
        assert_eq!(fs::read(dir.path(), "cpu.shares").unwrap(), "512");
        assert_eq!(fs::read(dir.path(), "cpu.cfs_period_us").unwrap(), "100000");
        assert_eq!(fs::read(dir.path(), "cpu.cfs_quota_us").unwrap(), "50000");
    }

    #[test]
    fn no_cpus_means_no_cap() {
        let dir = tempfile::tempdir().unwrap();
        Cpu::apply(dir.path(), &Limits::default()).unwrap();
        assert_eq!(fs::read(dir.path(), "cpu.shares").unwrap(), "2");
        assert!(!dir.path().join("cpu.cfs_quota_us").exists());
    }
}
