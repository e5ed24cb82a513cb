//! The cgroups a test's agent made under its own cgroup root: finding the container
//! directories and their processes, and removing what an agent that was killed left behind.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where cgroup hierarchies are mounted.
pub const MOUNT: &str = "/sys/fs/cgroup";

/// The hierarchies an agent creates its root in on a hybrid host (v1 controllers, then the
/// controller-less cgroup2 tree); on a cgroup2-only host the root lives in `MOUNT` itself.
pub const HIERARCHIES: [&str; 6] = ["cpu", "cpuacct", "memory", "pids", "devices", "unified"];

/// Whether /sys/fs/cgroup is one cgroup2 hierarchy (no v1 controllers mounted under it).
pub fn is_v2_only() -> bool {
    Path::new(MOUNT).join("cgroup.controllers").exists()
}

/// The directories of cgroup root `root` in every hierarchy that has it.
pub fn root_dirs(root: &str) -> Vec<PathBuf> {
    if is_v2_only() {
        return vec![Path::new(MOUNT).join(root)];
    }
    HIERARCHIES
        .iter()
        .map(|h| Path::new(MOUNT).join(h).join(root))
        .collect()
}

/// The cgroup2 directory of `root`: where BPF programs attach and where
/// `cgroup.max.descendants` limits how many containers can be created.
pub fn cgroup2_root(root: &str) -> PathBuf {
    if is_v2_only() {
        Path::new(MOUNT).join(root)
    } else {
        Path::new(MOUNT).join("unified").join(root)
    }
}

/// The container cgroups (sub-directories) under `root` in one hierarchy dir.
pub fn containers_in(root_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root_dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// The container cgroups under `root` in the hierarchy that counts processes (pids on v1).
pub fn containers(root: &str) -> Vec<PathBuf> {
    let dir = if is_v2_only() {
        Path::new(MOUNT).join(root)
    } else {
        Path::new(MOUNT).join("pids").join(root)
    };
    containers_in(&dir)
}

/// Pids in `dir/cgroup.procs`.
pub fn procs_of(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Every process inside a container cgroup under `root`, in any hierarchy.
pub fn procs(root: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = root_dirs(root)
        .iter()
        .flat_map(|d| containers_in(d))
        .flat_map(|c| procs_of(&c))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Whether process `pid` exists (a zombie counts as gone).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// SIGKILLs the processes left in containers under `root`, then removes the container
/// cgroups and the root in every hierarchy. For agents that were killed (or tests that
/// failed) and could not clean up themselves; what is already gone is skipped.
pub fn cleanup(root: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = procs(root);
        if pids.is_empty() || Instant::now() >= deadline {
            break;
        }
        for pid in pids {
            // SAFETY: kill(2) on a pid read from a cgroup that only this test's agent created.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for dir in root_dirs(root) {
        for container in containers_in(&dir) {
            let _ = std::fs::remove_dir(&container);
        }
        let _ = std::fs::remove_dir(&dir);
    }
    // The agent pins its eBPF counters under the same name; a killed agent leaves them.
    let pins = Path::new("/sys/fs/bpf/fleet").join(root);
    if let Ok(entries) = std::fs::read_dir(&pins) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        let _ = std::fs::remove_dir(&pins);
    }
}

/// Removes the cgroups of `root` when dropped, for tests that start agents themselves.
pub struct CgroupGuard(pub String);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        cleanup(&self.0);
    }
}
