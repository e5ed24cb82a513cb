//! v1 `cpuacct` controller: no limits, only the container's CPU time.

use std::path::Path;

use crate::cgroups::controller::{Controller, Limits};
use crate::cgroups::fs;
use crate::error::AgentError;

pub struct CpuAcct;

impl Controller for CpuAcct {
    const NAME: &'static str = "cpuacct";

    fn apply(_dir: &Path, _limits: &Limits) -> Result<(), AgentError> {
        Ok(())
    }
}

/// CPU time used by every task of the cgroup, in nanoseconds.
pub fn usage_ns(dir: &Path) -> Result<u64, AgentError> {
    fs::read_u64(dir, "cpuacct.usage")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_usage() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cpuacct.usage"), "123456789\n").unwrap();
        assert_eq!(usage_ns(dir.path()).unwrap(), 123_456_789);
    }
}
