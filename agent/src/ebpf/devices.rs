//! Device isolation: the cgroup_device program of ebpf/src/devices.rs, attached at the
//! agent's cgroup2 root, and the map of GPU devices each container may open. Every
//! container has an entry (an empty one when it has no GPU), so a container opens only
//! its own GPUs among NVIDIA's devices; other processes are not affected.

use std::{
    path::Path,
    sync::{Mutex, MutexGuard, PoisonError},
};

use aya::{
    Ebpf,
    maps::{HashMap, MapData, MapType},
    programs::{CgroupAttachMode, CgroupDevice},
};
use fleet_ebpf_common::{
    MAX_TRACKED_CGROUPS,
    devices::{DEVICE_ACCESS_MAP, DeviceAccess, MAX_CONTROL, MAX_GPUS},
};

use super::{
    error::{EbpfError, reason},
    ports::{attach_at_cgroup, open_cgroup},
    probes::{PinnedShape, is_absent, remove_pin, replace_stale_pin},
};
use crate::containerizer::ContainerSpec;

const PROGRAM: &str = "device_access";
/// `BPF_F_NO_PREALLOC`, as the map is declared.
const NO_PREALLOC: u32 = 1;

/// The device isolation program (attached while the object lives) and its map.
pub(super) struct Devices {
    access: Mutex<HashMap<MapData, u64, DeviceAccess>>,
}

impl std::fmt::Debug for Devices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devices").finish_non_exhaustive()
    }
}

fn map_error(action: String, reason: String) -> EbpfError {
    EbpfError::Map {
        map: DEVICE_ACCESS_MAP,
        action,
        reason,
    }
}

/// The entry of a container given `gpus` (minors) and `control` devices.
fn entry(gpus: &[u32], control: &[(u32, u32)]) -> Option<DeviceAccess> {
    if gpus.len() > MAX_GPUS || control.len() > MAX_CONTROL {
        return None;
    }
    let mut access = DeviceAccess {
        gpu_count: u32::try_from(gpus.len()).ok()?,
        control_count: u32::try_from(control.len()).ok()?,
        ..DeviceAccess::default()
    };
    access.minors[..gpus.len()].copy_from_slice(gpus);
    for (slot, (major, minor)) in access.control.iter_mut().zip(control) {
        *slot = (u64::from(*major) << 32) | u64::from(*minor);
    }
    Some(access)
}

impl Devices {
    /// Removes a pin of an older layout of the map, before the object is loaded.
    pub(super) fn prepare_pins(pin_dir: &Path) -> Result<(), EbpfError> {
        replace_stale_pin(
            pin_dir,
            &PinnedShape {
                map: DEVICE_ACCESS_MAP,
                map_type: MapType::Hash,
                key_size: std::mem::size_of::<u64>(),
                value_size: std::mem::size_of::<DeviceAccess>(),
                max_entries: MAX_TRACKED_CGROUPS,
                flags: NO_PREALLOC,
            },
        )
    }

    /// Removes the pin of the map.
    pub(super) fn remove_pins(pin_dir: &Path) -> Result<(), EbpfError> {
        remove_pin(pin_dir, DEVICE_ACCESS_MAP)
    }

    /// Loads the program, attaches it at `cgroup2_root` and opens the map.
    pub(super) fn load(object: &mut Ebpf, cgroup2_root: &Path) -> Result<Self, EbpfError> {
        let dir = open_cgroup(PROGRAM, cgroup2_root)?;
        attach_at_cgroup(
            object,
            PROGRAM,
            cgroup2_root,
            &dir,
            |program: &mut CgroupDevice, dir| {
                program.load()?;
                program.attach(dir, CgroupAttachMode::Single)?;
                Ok(())
            },
        )?;
        let map = object
            .take_map(DEVICE_ACCESS_MAP)
            .ok_or_else(|| map_error("find".into(), "absent from the eBPF object".into()))?;
        let access = HashMap::try_from(map).map_err(|e| map_error("open".into(), reason(&e)))?;
        Ok(Self {
            access: Mutex::new(access),
        })
    }

    /// Restricts container `spec` (cgroup `cgroup_id`) to its GPUs, before any of its
    /// processes runs.
    pub(super) fn admit(&self, cgroup_id: u64, spec: &ContainerSpec) -> Result<(), EbpfError> {
        let isolation = &spec.isolation;
        let value = entry(&isolation.gpus, &isolation.gpu_control).ok_or_else(|| {
            map_error(
                format!("admit cgroup {cgroup_id}"),
                format!(
                    "{} GPUs and {} control devices given; at most {MAX_GPUS} and \
                     {MAX_CONTROL} can be enforced",
                    isolation.gpus.len(),
                    isolation.gpu_control.len()
                ),
            )
        })?;
        self.lock()
            .insert(cgroup_id, value, 0)
            .map_err(|e| map_error(format!("admit cgroup {cgroup_id}"), reason(&e)))
    }

    /// Removes the entry of cgroup `cgroup_id`; absent entries are fine.
    pub(super) fn forget(&self, cgroup_id: u64) -> Result<(), EbpfError> {
        match self.lock().remove(&cgroup_id) {
            Err(e) if is_absent(&e) => Ok(()),
            other => other.map_err(|e| map_error(format!("forget cgroup {cgroup_id}"), reason(&e))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<MapData, u64, DeviceAccess>> {
        self.access.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Privileged tests: device nodes made with mknod (no driver behind them, so an allowed
/// open fails with ENXIO or ENODEV, a denied one with EPERM).
#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileTypeExt as _;

    use nix::sys::stat::{Mode, SFlag, makedev, mknod};

    use super::super::ports::tests::{Attached, python_in};
    use crate::containerizer::Isolation;

    const OPEN: &str = r"
import os, sys
for path in sys.argv[1:]:
    try:
        os.close(os.open(path, os.O_RDWR))
        print(path.rsplit('/', 1)[1], 'opened')
    except OSError as e:
        print(path.rsplit('/', 1)[1], e.errno)
";

    fn nodes(dir: &std::path::Path) -> Vec<String> {
        let mut paths = Vec::new();
        for (name, major, minor) in [
            ("nvidia0", 195, 0),
            ("nvidia1", 195, 1),
            ("nvidiactl", 195, 255),
            ("nvidia-uvm", 509, 0),
        ] {
            let path = dir.join(name);
            mknod(
                &path,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(major, minor),
            )
            .unwrap_or_else(|e| panic!("mknod {} (needs root): {e}", path.display()));
            assert!(
                std::fs::metadata(&path)
                    .unwrap()
                    .file_type()
                    .is_char_device()
            );
            paths.push(path.display().to_string());
        }
        paths
    }

    fn opened(output: &str, name: &str) -> String {
        output
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or("missing")
            .to_owned()
    }

    #[test]
    fn a_container_opens_only_its_gpus_and_their_control_devices() {
        let attached = Attached::new();
        let dir = tempfile::tempdir().unwrap();
        let paths = nodes(dir.path());
        let with = attached.child("gpu");
        let without = attached.child("nogpu");
        let outside = attached.child("outside");
        let mut spec = super::super::ports::tests::spec(dir.path(), &[]);
        spec.isolation = Isolation {
            gpus: vec![1],
            gpu_control: vec![(509, 0)],
            ..Isolation::default()
        };
        attached.probes.admit(with.id(), &spec).unwrap();
        spec.isolation = Isolation {
            gpu_control: vec![(509, 0)],
            ..Isolation::default()
        };
        attached.probes.admit(without.id(), &spec).unwrap();

        let eperm = libc::EPERM.to_string();
        let out = python_in(&with, OPEN, &paths);
        assert_eq!(opened(&out, "nvidia0"), eperm, "{out}");
        for allowed in ["nvidia1", "nvidiactl", "nvidia-uvm"] {
            assert_ne!(opened(&out, allowed), eperm, "{allowed}: {out}");
        }
        let out = python_in(&without, OPEN, &paths);
        for denied in ["nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"] {
            assert_eq!(opened(&out, denied), eperm, "{denied}: {out}");
        }
        // Not a container: not this program's business.
        let out = python_in(&outside, OPEN, &paths);
        assert_ne!(opened(&out, "nvidia0"), eperm, "{out}");
        // Forgotten: the cgroup is no longer restricted.
        attached.probes.untrack(without.id()).unwrap();
        let out = python_in(&without, OPEN, &paths);
        assert_ne!(opened(&out, "nvidia0"), eperm, "{out}");
    }

    #[test]
    fn too_many_gpus_are_refused() {
        assert!(super::entry(&[0; 17], &[]).is_none());
        assert!(super::entry(&[0, 1], &[(1, 1); 5]).is_none());
        let e = super::entry(&[3, 4], &[(509, 1)]).unwrap();
        assert!(e.allows(195, 3) && e.allows(509, 1) && !e.allows(195, 5));
    }
}
