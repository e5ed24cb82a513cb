//! A container's cgroup, whatever the hierarchy: the dispatch over the v1 and v2 backends
//! (creation, joining, usage, OOM, killing what is left, removal).

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cgroups::controller::Limits;
use crate::cgroups::fs;
use crate::cgroups::v1::V1Cgroup;
use crate::cgroups::v2::V2Cgroup;
use crate::error::AgentError;

/// What a container has used so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContainerUsage {
    /// CPU time of all its tasks, user and system, in nanoseconds.
    pub cpu_time_ns: u64,
    /// Memory charged to it now, in bytes.
    pub mem_bytes: u64,
}

/// The cgroup(s) of one container.
#[derive(Debug, Clone)]
pub enum ContainerCgroup {
    V1(V1Cgroup),
    V2(V2Cgroup),
}

impl ContainerCgroup {
    /// Creates the directories and writes the limits; on failure nothing is left behind.
    pub fn create(&self, limits: &Limits) -> Result<(), AgentError> {
        match self {
            ContainerCgroup::V1(c) => c.create(limits),
            ContainerCgroup::V2(c) => c.create(limits),
        }
    }

    fn dirs(&self) -> Vec<&Path> {
        match self {
            ContainerCgroup::V1(c) => c.dirs(),
            ContainerCgroup::V2(c) => vec![c.dir()],
        }
    }

    /// The `cgroup.procs` files a task writes itself into to join the container.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// The container's directory in the cgroup2 tree, where there is one.
    pub fn cgroup2_dir(&self) -> Option<&Path> {
        match self {
            ContainerCgroup::V1(c) => c.cgroup2_dir(),
            ContainerCgroup::V2(c) => Some(c.dir()),
        }
    }

    /// The cgroup2 id (the directory's inode, what `bpf_get_current_cgroup_id` returns).
    pub fn cgroup2_id(&self) -> Result<Option<u64>, AgentError> {
        self.cgroup2_dir()
            .map(|dir| {
                std::fs::metadata(dir)
                    .map(|m| m.ino())
                    .map_err(|e| fs::cgroup_err("stat", dir, e))
            })
            .transpose()
    }

    pub fn usage(&self) -> Result<ContainerUsage, AgentError> {
        let (cpu_time_ns, mem_bytes) = match self {
            ContainerCgroup::V1(c) => (c.cpu_time_ns()?, c.mem_bytes()?),
            ContainerCgroup::V2(c) => (c.cpu_time_ns()?, c.mem_bytes()?),
        };
        Ok(ContainerUsage {
            cpu_time_ns,
            mem_bytes,
        })
    }

    /// Whether the kernel's OOM killer killed one of its tasks.
    pub fn oom_killed(&self) -> Result<bool, AgentError> {
        match self {
            ContainerCgroup::V1(c) => c.oom_killed(),
            ContainerCgroup::V2(c) => c.oom_killed(),
        }
    }

    /// Every process in any of the container's directories.
    pub fn pids(&self) -> Result<Vec<i32>, AgentError> {
        let mut pids = BTreeSet::new();
        for dir in self.dirs() {
            pids.extend(fs::procs(dir)?);
        }
        Ok(pids.into_iter().collect())
    }

    /// Sends SIGKILL to every task still in the container and returns how many processes
    /// were found; the caller repeats until none is left (a task may fork meanwhile).
    pub fn kill_all(&self) -> Result<usize, AgentError> {
        let pids = self.pids()?;
        if pids.is_empty() {
            return Ok(0);
        }
        if let ContainerCgroup::V2(c) = self
            && c.kill_all()?
        {
            return Ok(pids.len());
        }
        for pid in &pids {
            // ESRCH: it exited between the read and the kill.
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        Ok(pids.len())
    }

    /// Removes every directory; fails while a task is inside.
    pub fn remove(&self) -> Result<(), AgentError> {
        match self {
            ContainerCgroup::V1(c) => c.remove(),
            ContainerCgroup::V2(c) => c.remove(),
        }
    }
}
