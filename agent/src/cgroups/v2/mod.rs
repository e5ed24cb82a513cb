//! cgroup v2 (unified): one directory per container under `<mount>/<root>/`, with the cpu,
//! memory and pids controllers enabled in the `cgroup.subtree_control` of every parent.

mod cpu;
mod memory;
mod pids;

use std::path::{Path, PathBuf};

use crate::cgroups::controller::{Controller, Limits};
use crate::cgroups::fs;
use crate::error::AgentError;

pub use cpu::Cpu;
pub use memory::Memory;
pub use pids::Pids;

/// The controllers every container's parent enables for its children.
pub const CONTROLLERS: [&str; 3] = [Cpu::NAME, Memory::NAME, Pids::NAME];

/// Creates `mount/root` and enables the container controllers for its children (and for
/// it, in the mount's own `cgroup.subtree_control`).
pub fn prepare_root(mount: &Path, root: &str) -> Result<(), AgentError> {
    let root_dir = mount.join(root);
    fs::create_dir(&root_dir)?;
    for dir in [mount, root_dir.as_path()] {
        let enabled = fs::read(dir, "cgroup.subtree_control")?;
        for controller in CONTROLLERS {
            if !enabled.split_whitespace().any(|c| c == controller) {
                fs::write(dir, "cgroup.subtree_control", &format!("+{controller}"))?;
            }
        }
    }
    Ok(())
}

/// A container's cgroup on a v2 host.
#[derive(Debug, Clone)]
pub struct V2Cgroup {
    dir: PathBuf,
}

impl V2Cgroup {
    /// The directory of `root/id` under `mount`, not yet created.
    pub fn at(mount: &Path, root: &str, id: &str) -> V2Cgroup {
        V2Cgroup {
            dir: mount.join(root).join(id),
        }
    }

    /// Creates the directory and writes the limits; on failure removes it again.
    pub fn create(&self, limits: &Limits) -> Result<(), AgentError> {
        fs::create_dir(&self.dir)?;
        let result = Cpu::apply(&self.dir, limits)
            .and_then(|()| Memory::apply(&self.dir, limits))
            .and_then(|()| Pids::apply(&self.dir, limits));
        if result.is_err() {
            let _ = fs::remove_dir(&self.dir);
        }
        result
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn cpu_time_ns(&self) -> Result<u64, AgentError> {
        cpu::usage_ns(&self.dir)
    }

    pub fn mem_bytes(&self) -> Result<u64, AgentError> {
        memory::usage_bytes(&self.dir)
    }

    pub fn oom_killed(&self) -> Result<bool, AgentError> {
        memory::oom_killed(&self.dir)
    }

    /// Kills every task at once through `cgroup.kill` (Linux 5.14+); `false` where the
    /// kernel lacks it, so the caller signals the tasks one by one.
    pub fn kill_all(&self) -> Result<bool, AgentError> {
        if !self.dir.join("cgroup.kill").exists() {
            return Ok(false);
        }
        fs::write(&self.dir, "cgroup.kill", "1")?;
        Ok(true)
    }

    pub fn remove(&self) -> Result<(), AgentError> {
        fs::remove_dir(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_root_enables_missing_controllers() {
        let mount = tempfile::tempdir().unwrap();
        std::fs::write(
            mount.path().join("cgroup.subtree_control"),
            "cpu memory pids",
        )
        .unwrap();
        std::fs::create_dir(mount.path().join("fleet-t")).unwrap();
        std::fs::write(mount.path().join("fleet-t/cgroup.subtree_control"), "").unwrap();
        prepare_root(mount.path(), "fleet-t").unwrap();
        // A regular file keeps only the last write; cgroupfs accumulates them.
        assert_eq!(
            fs::read(&mount.path().join("fleet-t"), "cgroup.subtree_control").unwrap(),
            "+pids"
        );
        assert_eq!(
            fs::read(mount.path(), "cgroup.subtree_control").unwrap(),
            "cpu memory pids"
        );
    }

    #[test]
    fn creates_the_container_dir_with_limits() {
        let mount = tempfile::tempdir().unwrap();
        let cgroup = V2Cgroup::at(mount.path(), "fleet-t", "c1");
        let limits = Limits {
            cpus_milli: 250,
            mem_bytes: 32 << 20,
            pids_max: Some(5),
            ..Limits::default()
        };
        cgroup.create(&limits).unwrap();
        let dir = mount.path().join("fleet-t/c1");
        assert_eq!(fs::read(&dir, "cpu.max").unwrap(), "25000 100000");
        assert_eq!(fs::read(&dir, "memory.max").unwrap(), "33554432");
        assert_eq!(fs::read(&dir, "pids.max").unwrap(), "5");
        assert!(!cgroup.kill_all().unwrap());
    }
}
