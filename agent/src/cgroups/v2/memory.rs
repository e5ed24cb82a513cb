//! v2 `memory` controller: `memory.max`, and `memory.swap.max` 0 where swap accounting
//! exists so swap cannot extend the limit; usage from `memory.current`, OOM kills from
//! `memory.events`.

use std::path::Path;

use crate::cgroups::controller::{Controller, Limits};
use crate::cgroups::fs;
use crate::error::AgentError;

pub struct Memory;

impl Controller for Memory {
    const NAME: &'static str = "memory";

    fn apply(dir: &Path, limits: &Limits) -> Result<(), AgentError> {
        if limits.mem_bytes == 0 {
            return Ok(());
        }
        fs::write(dir, "memory.max", &limits.mem_bytes.to_string())?;
        if dir.join("memory.swap.max").exists() {
            fs::write(dir, "memory.swap.max", "0")?;
        }
        Ok(())
    }
}

/// Memory charged to the cgroup, in bytes.
pub fn usage_bytes(dir: &Path) -> Result<u64, AgentError> {
    fs::read_u64(dir, "memory.current")
}

/// Whether the OOM killer has killed a task of this cgroup.
pub fn oom_killed(dir: &Path) -> Result<bool, AgentError> {
    Ok(fs::read_keyed(dir, "memory.events", "oom_kill")?.unwrap_or(0) > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_max_and_no_swap() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.swap.max"), "max").unwrap();
        Memory::apply(
            dir.path(),
            &Limits {
                mem_bytes: 64 << 20,
                ..Limits::default()
            },
        )
        .unwrap();
        assert_eq!(fs::read(dir.path(), "memory.max").unwrap(), "67108864");
        assert_eq!(fs::read(dir.path(), "memory.swap.max").unwrap(), "0");
    }

    #[test]
    fn zero_means_unlimited() {
        let dir = tempfile::tempdir().unwrap();
        Memory::apply(dir.path(), &Limits::default()).unwrap();
        assert!(!dir.path().join("memory.max").exists());
    }

    #[test]
    fn reads_oom_kills() {
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("memory.events");
        std::fs::write(&events, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        assert!(oom_killed(dir.path()).unwrap());
        std::fs::write(&events, "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n").unwrap();
        assert!(!oom_killed(dir.path()).unwrap());
    }
}
