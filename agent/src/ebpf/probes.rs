//! `UsageProbes`: the loaded, attached usage-accounting programs and their pinned
//! per-cgroup counters map.

use std::{
    io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, MapError, MapInfo, MapType, PerCpuHashMap, PerCpuValues},
    programs::TracePoint,
};
use fleet_ebpf_common::{CGROUP_COUNTERS_MAP, CgroupCounters, MAX_TRACKED_CGROUPS};

use super::{
    devices::Devices,
    disk::Disk,
    error::{EbpfError, reason},
    fs::{BPFFS_ROOT, ensure_bpffs, ensure_pin_dir, ensure_tracefs},
    net::Net,
    ports::Ports,
};
use crate::containerizer::ContainerSpec;

/// The object built from ebpf/ by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fleet-ebpf"));

/// The program counting bytes written, and the syscall exits it is attached to.
const BYTES_WRITTEN_PROGRAM: &str = "count_bytes_written";
const WRITE_EXITS: [&str; 5] = [
    "sys_exit_write",
    "sys_exit_pwrite64",
    "sys_exit_writev",
    "sys_exit_pwritev",
    "sys_exit_pwritev2",
];

/// `BPF_F_NO_PREALLOC`, as the kernel program declares the counters map.
const NO_PREALLOC: u32 = 1;
/// `BPF_NOEXIST`: insert only if the key is absent.
const BPF_NOEXIST: u64 = 1;

/// The default pin directory of an agent instance: `/sys/fs/bpf/fleet/<instance>`.
pub fn default_pin_dir(instance: &str) -> Result<PathBuf, EbpfError> {
    let invalid = |why| EbpfError::InvalidInstance {
        name: instance.to_owned(),
        why,
    };
    if instance.is_empty() {
        return Err(invalid("it is empty"));
    }
    if instance == "." || instance == ".." || instance.contains(['/', '\0']) {
        return Err(invalid(
            "it must be one path component (no '/', NUL, '.' or '..')",
        ));
    }
    Ok(Path::new(BPFFS_ROOT).join("fleet").join(instance))
}

/// The usage-accounting programs, attached, and their counters map, pinned in bpffs so
/// counts survive an agent restart.
///
/// Only tracked cgroups are counted: [`track`](Self::track) adds a cgroup2 id to the map,
/// [`untrack`](Self::untrack) removes it and its counts. Programs detach when this is
/// dropped; the pinned map (and its counts) stays until [`unpin`](Self::unpin).
pub struct UsageProbes {
    pin_dir: PathBuf,
    nr_cpus: usize,
    counters: Mutex<PerCpuHashMap<MapData, u64, CgroupCounters>>,
    ports: Ports,
    net: Net,
    devices: Devices,
    disk: Disk,
    /// Owns the programs and their links; dropping it detaches them.
    _object: Mutex<Ebpf>,
}

impl std::fmt::Debug for UsageProbes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageProbes")
            .field("pin_dir", &self.pin_dir)
            .finish_non_exhaustive()
    }
}

impl UsageProbes {
    /// Loads and attaches the programs for agent instance `instance`, pinning (or reusing)
    /// its maps in [`default_pin_dir`]; the cgroup programs attach at `cgroup2_root`, the
    /// agent's directory in the cgroup2 tree, which holds every container's cgroup. Mounts
    /// bpffs and tracefs when they are absent.
    pub fn load(instance: &str, cgroup2_root: &Path) -> Result<Self, EbpfError> {
        Self::load_pinned_in(&default_pin_dir(instance)?, cgroup2_root)
    }

    /// Like [`load`](Self::load), with the maps pinned in `pin_dir`, which must be on bpffs
    /// (it is created if missing). Maps already pinned there by an earlier run are reused
    /// with their contents, unless their shape no longer matches the programs' (then they
    /// are replaced, and the old counts are lost).
    pub fn load_pinned_in(pin_dir: &Path, cgroup2_root: &Path) -> Result<Self, EbpfError> {
        if pin_dir.as_os_str().as_bytes().contains(&0) {
            return Err(EbpfError::PinDir {
                path: pin_dir.to_owned(),
                reason: "the path contains a NUL byte".into(),
            });
        }
        ensure_bpffs()?;
        ensure_tracefs()?;
        ensure_pin_dir(pin_dir)?;
        replace_stale_pin(
            pin_dir,
            &PinnedShape {
                map: CGROUP_COUNTERS_MAP,
                map_type: MapType::PerCpuHash,
                key_size: std::mem::size_of::<u64>(),
                value_size: std::mem::size_of::<CgroupCounters>(),
                max_entries: MAX_TRACKED_CGROUPS,
                flags: NO_PREALLOC,
            },
        )?;
        Disk::prepare_pins(pin_dir)?;
        Ports::prepare_pins(pin_dir)?;
        Devices::prepare_pins(pin_dir)?;

        let mut object = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .load(OBJECT)
            .map_err(|e| EbpfError::Load {
                pin_dir: pin_dir.to_owned(),
                reason: reason(&e),
            })?;
        attach_write_exits(&mut object)?;
        let ports = Ports::load(&mut object, cgroup2_root)?;
        let net = Net::load(&mut object, cgroup2_root)?;
        let devices = Devices::load(&mut object, cgroup2_root)?;
        let disk = Disk::load(&mut object, cgroup2_root)?;

        let map_error = |action: &str, reason: String| EbpfError::Map {
            map: CGROUP_COUNTERS_MAP,
            action: action.to_owned(),
            reason,
        };
        let map = object
            .take_map(CGROUP_COUNTERS_MAP)
            .ok_or_else(|| map_error("find", "absent from the eBPF object".into()))?;
        let counters = PerCpuHashMap::try_from(map).map_err(|e| map_error("open", reason(&e)))?;
        let nr_cpus = aya::util::nr_cpus()
            .map_err(|(file, e)| map_error("count CPUs", format!("{file}: {e}")))?;

        Ok(Self {
            pin_dir: pin_dir.to_owned(),
            nr_cpus,
            counters: Mutex::new(counters),
            ports,
            net,
            devices,
            disk,
            _object: Mutex::new(object),
        })
    }

    /// The bpffs directory holding this instance's pinned maps.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Starts counting for the cgroup with this cgroup2 id (see
    /// [`cgroup_id_of`](super::cgroup_id_of)). Counts already held for it (from before an
    /// agent restart) are kept.
    pub fn track(&self, cgroup_id: u64) -> Result<(), EbpfError> {
        let zeros = PerCpuValues::try_from(vec![CgroupCounters::default(); self.nr_cpus])
            .map_err(|e| self.map_error(format!("track cgroup {cgroup_id}"), &e))?;
        let result = self.lock().insert(cgroup_id, zeros, BPF_NOEXIST);
        match result {
            Err(e) if os_error(&e) == Some(libc::EEXIST) => Ok(()),
            other => other.map_err(|e| self.map_error(format!("track cgroup {cgroup_id}"), &e)),
        }
    }

    /// Starts counting for container `spec` in cgroup `cgroup_id` and enforcing its
    /// isolation (ports, devices, disk), before any of its processes runs. On error
    /// nothing of it is left registered.
    pub fn admit(&self, cgroup_id: u64, spec: &ContainerSpec) -> Result<(), EbpfError> {
        let result = self
            .track(cgroup_id)
            .and_then(|()| self.ports.admit(cgroup_id, spec))
            .and_then(|()| self.net.admit(cgroup_id, spec))
            .and_then(|()| self.devices.admit(cgroup_id, spec))
            .and_then(|()| self.disk.admit(cgroup_id, spec));
        if result.is_err() {
            let _ = self.untrack(cgroup_id);
        }
        result
    }

    /// Stops counting for this cgroup, forgets its counts and its isolation. Untracking a
    /// cgroup that is not tracked does nothing.
    pub fn untrack(&self, cgroup_id: u64) -> Result<(), EbpfError> {
        let forgotten = [
            self.ports.forget(cgroup_id),
            self.net.forget(cgroup_id),
            self.devices.forget(cgroup_id),
            self.disk.forget(cgroup_id),
        ];
        if let Some(e) = forgotten.into_iter().find_map(Result::err) {
            let _ = self.lock().remove(&cgroup_id);
            return Err(e);
        }
        match self.lock().remove(&cgroup_id) {
            Err(e) if is_absent(&e) => Ok(()),
            other => other.map_err(|e| self.map_error(format!("untrack cgroup {cgroup_id}"), &e)),
        }
    }

    /// The counts of a tracked cgroup, summed over CPUs; `None` when it is not tracked.
    pub fn counters(&self, cgroup_id: u64) -> Result<Option<CgroupCounters>, EbpfError> {
        match self.lock().get(&cgroup_id, 0) {
            Ok(per_cpu) => {
                let mut sum = per_cpu
                    .iter()
                    .fold(CgroupCounters::default(), |sum, cpu| sum.plus(*cpu));
                sum.disk_bytes = self.disk.bytes(cgroup_id)?.unwrap_or(0);
                Ok(Some(sum))
            }
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(self.map_error(format!("read cgroup {cgroup_id}"), &e)),
        }
    }

    /// The cgroup2 ids being tracked (after a restart: those tracked before it).
    pub fn tracked(&self) -> Result<Vec<u64>, EbpfError> {
        self.lock()
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.map_error("list tracked cgroups".into(), &e))
    }

    /// Detaches the programs and removes the pinned maps (and the pin directory if that
    /// leaves it empty): the counts are gone for good.
    pub fn unpin(self) -> Result<(), EbpfError> {
        let dir = self.pin_dir.clone();
        drop(self);
        remove_pin(&dir, CGROUP_COUNTERS_MAP)?;
        Disk::remove_pins(&dir)?;
        Ports::remove_pins(&dir)?;
        Devices::remove_pins(&dir)?;
        // Another map pinned there by hand keeps the directory; that is not an error.
        let _ = std::fs::remove_dir(&dir);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PerCpuHashMap<MapData, u64, CgroupCounters>> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn map_error(&self, action: String, error: &dyn std::error::Error) -> EbpfError {
        EbpfError::Map {
            map: CGROUP_COUNTERS_MAP,
            action,
            reason: reason(error),
        }
    }
}

fn attach_write_exits(object: &mut Ebpf) -> Result<(), EbpfError> {
    let program_error = |reason: String| EbpfError::Program {
        program: BYTES_WRITTEN_PROGRAM,
        reason,
    };
    let program: &mut TracePoint = object
        .program_mut(BYTES_WRITTEN_PROGRAM)
        .ok_or_else(|| program_error("absent from the eBPF object".into()))?
        .try_into()
        .map_err(|e| program_error(reason(&e)))?;
    program.load().map_err(|e| program_error(reason(&e)))?;
    for exit in WRITE_EXITS {
        program
            .attach("syscalls", exit)
            .map_err(|e| EbpfError::Attach {
                tracepoint: format!("syscalls/{exit}"),
                reason: reason(&e),
            })?;
    }
    Ok(())
}

/// The shape a pinned map must have to be reused by these programs.
pub(super) struct PinnedShape {
    pub map: &'static str,
    pub map_type: MapType,
    pub key_size: usize,
    pub value_size: usize,
    pub max_entries: u32,
    pub flags: u32,
}

/// A map pinned by an older agent whose shape differs from the programs' would make the
/// load fail (or, worse, be read with the wrong layout): remove it so a fresh one is made.
pub(super) fn replace_stale_pin(pin_dir: &Path, shape: &PinnedShape) -> Result<(), EbpfError> {
    let pin = pin_dir.join(shape.map);
    if !pin.exists() {
        return Ok(());
    }
    let info = MapInfo::from_pin(&pin).map_err(|e| EbpfError::Map {
        map: shape.map,
        action: format!("open pinned {}", pin.display()),
        reason: reason(&e),
    })?;
    let matches = info.map_type().is_ok_and(|t| t == shape.map_type)
        && usize::try_from(info.key_size()) == Ok(shape.key_size)
        && usize::try_from(info.value_size()) == Ok(shape.value_size)
        && info.max_entries() == shape.max_entries
        && info.map_flags() == shape.flags;
    if matches {
        return Ok(());
    }
    tracing::warn!(
        pin = %pin.display(),
        key_size = info.key_size(),
        value_size = info.value_size(),
        max_entries = info.max_entries(),
        "pinned map has another shape than the programs'; replacing it (its contents are lost)"
    );
    std::fs::remove_file(&pin).map_err(|e| EbpfError::PinDir {
        path: pin.clone(),
        reason: format!("cannot remove the stale pin: {e}"),
    })
}

/// Removes a map pin, if present.
pub(super) fn remove_pin(pin_dir: &Path, map: &str) -> Result<(), EbpfError> {
    let pin = pin_dir.join(map);
    match std::fs::remove_file(&pin) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(EbpfError::PinDir {
            path: pin,
            reason: format!("cannot remove the pin: {e}"),
        }),
        _ => Ok(()),
    }
}

pub(super) fn os_error(error: &MapError) -> Option<i32> {
    match error {
        MapError::SyscallError(e) => e.io_error.raw_os_error(),
        _ => None,
    }
}

pub(super) fn is_absent(error: &MapError) -> bool {
    matches!(error, MapError::KeyNotFound) || os_error(error) == Some(libc::ENOENT)
}
