//! cgroup v1 (and hybrid): one directory per controller under `<mount>/<controller>/`, plus,
//! on hybrid hosts, a directory in the controller-less cgroup2 tree so programs keyed by
//! cgroup2 id (BPF) see the container's tasks.

mod cpu;
mod cpuacct;
mod devices;
mod memory;
mod pids;

use std::path::{Path, PathBuf};

use crate::cgroups::controller::{Controller, Limits};
use crate::cgroups::fs;
use crate::error::AgentError;

pub use cpu::Cpu;
pub use cpuacct::CpuAcct;
pub use devices::Devices;
pub use memory::Memory;
pub use pids::Pids;

/// The v1 controllers a container is placed in, in creation order.
pub const CONTROLLERS: [&str; 5] = [
    Cpu::NAME,
    CpuAcct::NAME,
    Memory::NAME,
    Pids::NAME,
    Devices::NAME,
];

/// A container's cgroups on a v1 or hybrid host.
#[derive(Debug, Clone)]
pub struct V1Cgroup {
    cpu: PathBuf,
    cpuacct: PathBuf,
    memory: PathBuf,
    pids: PathBuf,
    devices: PathBuf,
    unified: Option<PathBuf>,
}

impl V1Cgroup {
    /// The directories of `root/id` under `mount` (and `unified`), not yet created.
    pub fn at(mount: &Path, unified: Option<&Path>, root: &str, id: &str) -> V1Cgroup {
        let dir = |controller: &str| mount.join(controller).join(root).join(id);
        V1Cgroup {
            cpu: dir(Cpu::NAME),
            cpuacct: dir(CpuAcct::NAME),
            memory: dir(Memory::NAME),
            pids: dir(Pids::NAME),
            devices: dir(Devices::NAME),
            unified: unified.map(|u| u.join(root).join(id)),
        }
    }

    /// Creates every directory and writes the limits. On failure the directories made so
    /// far are removed again and the error names the file that failed.
    pub fn create(&self, limits: &Limits) -> Result<(), AgentError> {
        let result = self.create_and_apply(limits);
        if result.is_err() {
            let _ = self.remove();
        }
        result
    }

    fn create_and_apply(&self, limits: &Limits) -> Result<(), AgentError> {
        for dir in self.dirs() {
            fs::create_dir(dir)?;
        }
        Cpu::apply(&self.cpu, limits)?;
        CpuAcct::apply(&self.cpuacct, limits)?;
        Memory::apply(&self.memory, limits)?;
        Pids::apply(&self.pids, limits)?;
        Devices::apply(&self.devices, limits)
    }

    /// Every directory of the container, controllers first, the cgroup2 one last.
    pub fn dirs(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = vec![
            &self.cpu,
            &self.cpuacct,
            &self.memory,
            &self.pids,
            &self.devices,
        ];
        dirs.extend(self.unified.as_deref());
        dirs
    }

    pub fn cgroup2_dir(&self) -> Option<&Path> {
        self.unified.as_deref()
    }

    pub fn cpu_time_ns(&self) -> Result<u64, AgentError> {
        cpuacct::usage_ns(&self.cpuacct)
    }

    pub fn mem_bytes(&self) -> Result<u64, AgentError> {
        memory::usage_bytes(&self.memory)
    }

    pub fn oom_killed(&self) -> Result<bool, AgentError> {
        memory::oom_killed(&self.memory)
    }

    /// Removes every directory; fails while a task is still inside.
    pub fn remove(&self) -> Result<(), AgentError> {
        let mut first_err = None;
        for dir in self.dirs().into_iter().rev() {
            if let Err(e) = fs::remove_dir(dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_one_dir_per_controller_and_the_cgroup2_dir() {
        let mount = tempfile::tempdir().unwrap();
        let unified = mount.path().join("unified");
        let cgroup = V1Cgroup::at(mount.path(), Some(&unified), "fleet-t", "c1");
        let limits = Limits {
            cpus_milli: 1500,
            mem_bytes: 1 << 20,
            pids_max: Some(10),
            ..Limits::default()
        };
        cgroup.create(&limits).unwrap();
        let path = |c: &str| mount.path().join(c).join("fleet-t/c1");
        assert_eq!(fs::read(&path("cpu"), "cpu.shares").unwrap(), "1536");
        assert_eq!(
            fs::read(&path("cpu"), "cpu.cfs_quota_us").unwrap(),
            "150000"
        );
        assert_eq!(
            fs::read(&path("memory"), "memory.limit_in_bytes").unwrap(),
            "1048576"
        );
        assert_eq!(fs::read(&path("pids"), "pids.max").unwrap(), "10");
        assert!(unified.join("fleet-t/c1").is_dir());
        assert_eq!(
            cgroup.cgroup2_dir(),
            Some(unified.join("fleet-t/c1").as_path())
        );
    }

    #[test]
    fn failure_removes_what_was_created() {
        let mount = tempfile::tempdir().unwrap();
        // A plain file where the pids hierarchy should be: its directory cannot be made.
        std::fs::write(mount.path().join("pids"), "").unwrap();
        let cgroup = V1Cgroup::at(mount.path(), None, "fleet-t", "c1");
        let err = cgroup.create(&Limits::default()).unwrap_err().to_string();
        assert!(err.contains("pids/fleet-t/c1"), "{err}");
        assert!(!mount.path().join("cpu/fleet-t/c1").exists());
        assert!(!mount.path().join("memory/fleet-t/c1").exists());
    }
}
