//! v1 `devices` controller, for GPU isolation on v1 and hybrid hosts (beside the
//! cgroup_device BPF program, which the kernel runs first): NVIDIA's char devices (major
//! 195) other than the container's own GPUs are denied, and so are /dev/nvidiactl and the
//! GPU control devices for a container without GPUs. A new devices cgroup starts allowing
//! everything its parent allows, so the rules are denials; everything else stays allowed.

use std::path::Path;

use crate::cgroups::controller::{Controller, Limits};
use crate::cgroups::fs;
use crate::error::AgentError;

/// NVIDIA's char device major.
const NVIDIA_MAJOR: u32 = 195;
/// /dev/nvidiactl's minor.
const NVIDIACTL_MINOR: u32 = 255;

pub struct Devices;

impl Controller for Devices {
    const NAME: &'static str = "devices";

    fn apply(dir: &Path, limits: &Limits) -> Result<(), AgentError> {
        let Some(gpus) = &limits.gpus else {
            return Ok(());
        };
        let has_gpu = !gpus.minors.is_empty();
        if !has_gpu {
            fs::write(dir, "devices.deny", &format!("c {NVIDIA_MAJOR}:* rwm"))?;
        } else {
            // A wildcard denial cannot be narrowed by a later allow in v1: deny every
            // other minor one by one.
            for minor in (0..NVIDIACTL_MINOR).filter(|m| !gpus.minors.contains(m)) {
                fs::write(
                    dir,
                    "devices.deny",
                    &format!("c {NVIDIA_MAJOR}:{minor} rwm"),
                )?;
            }
        }
        if !has_gpu {
            for (major, minor) in &gpus.control {
                fs::write(dir, "devices.deny", &format!("c {major}:{minor} rwm"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::controller::GpuAccess;

    fn written(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("devices.deny")).unwrap_or_default()
    }

    #[test]
    fn a_container_without_gpus_is_denied_all_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            gpus: Some(GpuAccess {
                minors: vec![],
                control: vec![(509, 0)],
            }),
            ..Limits::default()
        };
        Devices::apply(dir.path(), &limits).unwrap();
        // A plain file keeps only the last write; the real cgroup file takes each.
        assert_eq!(written(dir.path()), "c 509:0 rwm");
    }

    #[test]
    fn no_gpu_rules_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        Devices::apply(dir.path(), &Limits::default()).unwrap();
        assert!(!dir.path().join("devices.deny").exists());
    }
}
