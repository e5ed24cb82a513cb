//! What this machine offers, detected at start: CPUs, memory, disk of the work directory,
//! the default port range and NVIDIA GPUs. Plain numbers; conversion to resources is done
//! by the caller.
//!
//! Memory and disk keep a reserve for the system, as Mesos does: memory offers the total
//! minus 1 GiB, or half of it when the machine has less than 2 GiB
//! (`total - min(1 GiB, total / 2)`); disk the same with 5 GiB (`total - min(5 GiB,
//! total / 2)`).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{major, minor};
use nix::sys::statvfs::statvfs;

use crate::error::AgentError;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Memory kept back for the system and the agent.
pub const MEM_RESERVE: u64 = GIB;
/// Disk kept back for the system and the agent.
pub const DISK_RESERVE: u64 = 5 * GIB;
/// Ports offered when none are configured, as in Mesos.
pub const DEFAULT_PORTS: (u16, u16) = (31000, 32000);
/// The major number of NVIDIA's GPU char devices (/dev/nvidia<minor>).
pub const NVIDIA_MAJOR: u64 = 195;

/// The resources of this machine that can be offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineResources {
    /// Online CPUs.
    pub cpus: u64,
    /// Memory in MiB, after the reserve.
    pub mem_mb: u64,
    /// Disk of the work directory's filesystem in MiB, after the reserve.
    pub disk_mb: u64,
    /// Port ranges, inclusive.
    pub ports: Vec<(u16, u16)>,
    /// Minor numbers of the NVIDIA GPUs.
    pub gpus: Vec<u32>,
}

/// Detects everything: disk from `work_dir`'s filesystem, GPUs from `dev_dir` (`/dev`).
pub fn detect(work_dir: &Path, dev_dir: &Path) -> Result<MachineResources, AgentError> {
    Ok(MachineResources {
        cpus: cpus(),
        mem_mb: mem_mb(Path::new("/proc/meminfo"))?,
        disk_mb: disk_mb(work_dir)?,
        ports: vec![DEFAULT_PORTS],
        gpus: gpus(dev_dir)?,
    })
}

/// What is left of `total` after keeping back `min(reserve, total / 2)`.
pub fn after_reserve(total: u64, reserve: u64) -> u64 {
    total - reserve.min(total / 2)
}

/// Online CPUs.
pub fn cpus() -> u64 {
    // SAFETY: sysconf only reads a system value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u64::try_from(n).unwrap_or(1).max(1)
}

/// `MemTotal` of a /proc/meminfo text, in bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn detect_err(what: &'static str, path: &Path, reason: impl ToString) -> AgentError {
    AgentError::Detect {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Memory to offer, in MiB, from `meminfo` (/proc/meminfo).
pub fn mem_mb(meminfo: &Path) -> Result<u64, AgentError> {
    let text = std::fs::read_to_string(meminfo).map_err(|e| detect_err("memory", meminfo, e))?;
    let total =
        parse_mem_total(&text).ok_or_else(|| detect_err("memory", meminfo, "no MemTotal line"))?;
    Ok(after_reserve(total, MEM_RESERVE) / MIB)
}

/// Disk to offer, in MiB, from the size of the filesystem holding `work_dir`.
pub fn disk_mb(work_dir: &Path) -> Result<u64, AgentError> {
    let stat = statvfs(work_dir).map_err(|e| detect_err("disk", work_dir, e))?;
    #[allow(clippy::useless_conversion)] // the field types differ between libc targets
    let total = u64::from(stat.blocks()).saturating_mul(stat.fragment_size());
    Ok(after_reserve(total, DISK_RESERVE) / MIB)
}

/// Minor numbers of the NVIDIA GPUs: char devices named `nvidia<N>` with major 195 in
/// `dev_dir`, sorted. (nvidiactl, nvidia-uvm and friends are not GPUs.)
pub fn gpus(dev_dir: &Path) -> Result<Vec<u32>, AgentError> {
    let entries = std::fs::read_dir(dev_dir).map_err(|e| detect_err("gpus", dev_dir, e))?;
    let mut minors = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| detect_err("gpus", dev_dir, e))?;
        let name = entry.file_name();
        let Some(suffix) = name.to_str().and_then(|n| n.strip_prefix("nvidia")) else {
            continue;
        };
        if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let path: PathBuf = entry.path();
        let meta = std::fs::metadata(&path).map_err(|e| detect_err("gpus", &path, e))?;
        if meta.file_type().is_char_device() && major(meta.rdev()) == NVIDIA_MAJOR {
            minors.push(u32::try_from(minor(meta.rdev())).unwrap_or(u32::MAX));
        }
    }
    minors.sort_unstable();
    Ok(minors)
}

/// The GPU control devices besides /dev/nvidiactl (whose number is fixed): char devices
/// named `nvidia-uvm`, `nvidia-uvm-tools` and `nvidia-modeset` in `dev_dir`, as (major,
/// minor). Their majors are assigned at driver load.
pub fn gpu_control(dev_dir: &Path) -> Result<Vec<(u32, u32)>, AgentError> {
    let mut devices = Vec::new();
    for name in ["nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"] {
        let path = dev_dir.join(name);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.file_type().is_char_device() => {
                let rdev = meta.rdev();
                let number = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
                devices.push((number(major(rdev)), number(minor(rdev))));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(detect_err("gpus", &path, e)),
        }
    }
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};

    #[test]
    fn reserve_is_capped_at_half() {
        assert_eq!(after_reserve(24 * GIB, GIB), 23 * GIB);
        assert_eq!(after_reserve(GIB, GIB), GIB / 2);
        assert_eq!(after_reserve(2 * GIB, GIB), GIB);
        assert_eq!(after_reserve(100 * GIB, DISK_RESERVE), 95 * GIB);
        assert_eq!(after_reserve(0, GIB), 0);
    }

    #[test]
    fn parses_meminfo() {
        let text = "MemTotal:       24567892 kB\nMemFree:        1000 kB\n";
        assert_eq!(parse_mem_total(text), Some(24_567_892 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn detects_this_machine() {
        let work = tempfile::tempdir().unwrap();
        let r = detect(work.path(), work.path()).unwrap();
        assert!(r.cpus >= 1);
        assert!(r.mem_mb > 0 && r.disk_mb > 0);
        assert_eq!(r.ports, vec![(31000, 32000)]);
        assert!(r.gpus.is_empty());
    }

    /// Needs root (mknod).
    #[test]
    fn finds_nvidia_char_devices_by_major() {
        let dev = tempfile::tempdir().unwrap();
        let node = |name: &str, maj: u64, min: u64| {
            mknod(
                &dev.path().join(name),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o600),
                makedev(maj, min),
            )
            .unwrap_or_else(|e| panic!("mknod {name} (needs root / CAP_MKNOD): {e}"));
        };
        node("nvidia1", 195, 1);
        node("nvidia0", 195, 0);
        node("nvidiactl", 195, 255);
        node("nvidia7", 10, 7);
        std::fs::write(dev.path().join("nvidia3"), "").unwrap();
        assert_eq!(gpus(dev.path()).unwrap(), vec![0, 1]);
    }
}
