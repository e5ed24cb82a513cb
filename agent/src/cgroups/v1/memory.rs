//! v1 `memory` controller: `memory.limit_in_bytes`, and the same value in
//! `memory.memsw.limit_in_bytes` where swap accounting exists so swap cannot extend the
//! limit; usage and OOM kills for the container's statistics and termination reason.

use std::path::Path;

use crate::cgroups::controller::{Controller, Limits};
use crate::cgroups::fs;
use crate::error::AgentError;

pub struct Memory;

const MEMSW_LIMIT: &str = "memory.memsw.limit_in_bytes";

impl Controller for Memory {
    const NAME: &'static str = "memory";

    fn apply(dir: &Path, limits: &Limits) -> Result<(), AgentError> {
        if limits.mem_bytes == 0 {
            return Ok(());
        }
        let value = limits.mem_bytes.to_string();
        // The kernel wants limit_in_bytes <= memsw.limit_in_bytes at every step: lower
        // the memory limit first.
        fs::write(dir, "memory.limit_in_bytes", &value)?;
        if dir.join(MEMSW_LIMIT).exists() {
            fs::write(dir, MEMSW_LIMIT, &value)?;
        }
        Ok(())
    }
}

/// Memory charged to the cgroup (resident plus page cache), in bytes.
pub fn usage_bytes(dir: &Path) -> Result<u64, AgentError> {
    fs::read_u64(dir, "memory.usage_in_bytes")
}

/// Whether the kernel's OOM killer has killed a task of this cgroup (`oom_kill` in
/// memory.oom_control, since Linux 4.13).
pub fn oom_killed(dir: &Path) -> Result<bool, AgentError> {
    Ok(fs::read_keyed(dir, "memory.oom_control", "oom_kill")?.unwrap_or(0) > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_limit_and_memsw_when_present() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MEMSW_LIMIT), "").unwrap();
        let limits = Limits {
            mem_bytes: 64 << 20,
            ..Limits::default()
        };
        Memory::apply(dir.path(), &limits).unwrap();
        assert_eq!(
            fs::read(dir.path(), "memory.limit_in_bytes").unwrap(),
            "67108864"
        );
        assert_eq!(fs::read(dir.path(), MEMSW_LIMIT).unwrap(), "67108864");
    }

    #[test]
    fn skips_memsw_without_swap_accounting() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            mem_bytes: 1 << 30,
            ..Limits::default()
        };
        Memory::apply(dir.path(), &limits).unwrap();
        assert!(!dir.path().join(MEMSW_LIMIT).exists());
    }

    #[test]
    fn reads_oom_kills() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.oom_control");
        std::fs::write(&path, "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n").unwrap();
        assert!(!oom_killed(dir.path()).unwrap());
        std::fs::write(&path, "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n").unwrap();
        assert!(oom_killed(dir.path()).unwrap());
    }
}
