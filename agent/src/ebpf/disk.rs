//! Disk accounting: the ext4 tracepoint programs of ebpf/src/disk.rs and their maps of
//! inode ownership and per-container blocks. The agent never walks a sandbox to measure
//! it: at admission it assigns the container its sandbox directory and log files (the
//! only inodes it writes on the task's behalf), and the kernel programs charge every
//! block those and the task's own files gain or lose.

use std::{
    os::unix::fs::MetadataExt as _,
    path::Path,
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use aya::{
    Ebpf,
    maps::{HashMap, MapData, MapType, PerCpuHashMap, PerCpuValues},
    programs::TracePoint,
};
use fleet_ebpf_common::{
    MAX_TRACKED_CGROUPS,
    disk::{DISK_INODES_MAP, DISK_USAGE_MAP, InodeCharge, InodeKey, MAX_TRACKED_INODES},
};
use nix::sys::statfs::{EXT4_SUPER_MAGIC, statfs};

use super::{
    error::{EbpfError, reason},
    probes::{PinnedShape, is_absent, os_error, remove_pin, replace_stale_pin},
};
use crate::containerizer::ContainerSpec;

/// Each program and the ext4 tracepoint it attaches to.
const PROGRAMS: [(&str, &str); 5] = [
    ("disk_reserve", "ext4_da_reserve_space"),
    ("disk_release", "ext4_da_release_space"),
    ("disk_allocate", "ext4_allocate_blocks"),
    ("disk_free", "ext4_free_blocks"),
    ("disk_free_inode", "ext4_free_inode"),
];

/// `BPF_F_NO_PREALLOC`, as both maps are declared.
const NO_PREALLOC: u32 = 1;
/// `BPF_NOEXIST`: insert only if the key is absent.
const BPF_NOEXIST: u64 = 1;
/// The block size assumed until a sandbox tells the real one (ext4's default).
const DEFAULT_BLOCK_SIZE: u64 = 4096;

/// The disk accounting programs and their maps.
pub(super) struct Disk {
    inodes: Mutex<HashMap<MapData, InodeKey, InodeCharge>>,
    usage: Mutex<PerCpuHashMap<MapData, u64, i64>>,
    nr_cpus: usize,
    /// Block size of the sandboxes' filesystem, in bytes.
    block_size: AtomicU64,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk")
            .field("block_size", &self.block_size.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn map_error(
    map: &'static str,
    action: impl Into<String>,
    error: &dyn std::error::Error,
) -> EbpfError {
    EbpfError::Map {
        map,
        action: action.into(),
        reason: reason(error),
    }
}

impl Disk {
    /// Removes pins of an older layout of these maps, before the object is loaded.
    pub(super) fn prepare_pins(pin_dir: &Path) -> Result<(), EbpfError> {
        replace_stale_pin(
            pin_dir,
            &PinnedShape {
                map: DISK_INODES_MAP,
                map_type: MapType::Hash,
                key_size: std::mem::size_of::<InodeKey>(),
                value_size: std::mem::size_of::<InodeCharge>(),
                max_entries: MAX_TRACKED_INODES,
                flags: NO_PREALLOC,
            },
        )?;
        replace_stale_pin(
            pin_dir,
            &PinnedShape {
                map: DISK_USAGE_MAP,
                map_type: MapType::PerCpuHash,
                key_size: std::mem::size_of::<u64>(),
                value_size: std::mem::size_of::<i64>(),
                max_entries: MAX_TRACKED_CGROUPS,
                flags: NO_PREALLOC,
            },
        )
    }

    /// Removes the pins of these maps (their counts are gone for good).
    pub(super) fn remove_pins(pin_dir: &Path) -> Result<(), EbpfError> {
        remove_pin(pin_dir, DISK_INODES_MAP)?;
        remove_pin(pin_dir, DISK_USAGE_MAP)
    }

    /// Loads and attaches the programs to the ext4 tracepoints and opens the maps.
    pub(super) fn load(object: &mut Ebpf, _cgroup2_root: &Path) -> Result<Self, EbpfError> {
        for (name, tracepoint) in PROGRAMS {
            let program_error = |reason: String| EbpfError::Program {
                program: name,
                reason,
            };
            let program: &mut TracePoint = object
                .program_mut(name)
                .ok_or_else(|| program_error("absent from the eBPF object".into()))?
                .try_into()
                .map_err(|e| program_error(reason(&e)))?;
            program.load().map_err(|e| program_error(reason(&e)))?;
            program
                .attach("ext4", tracepoint)
                .map_err(|e| EbpfError::Attach {
                    tracepoint: format!("ext4/{tracepoint}"),
                    reason: reason(&e),
                })?;
        }
        let take = |object: &mut Ebpf, map: &'static str| {
            object.take_map(map).ok_or_else(|| EbpfError::Map {
                map,
                action: "find".into(),
                reason: "absent from the eBPF object".into(),
            })
        };
        let inodes = HashMap::try_from(take(object, DISK_INODES_MAP)?)
            .map_err(|e| map_error(DISK_INODES_MAP, "open", &e))?;
        let usage = PerCpuHashMap::try_from(take(object, DISK_USAGE_MAP)?)
            .map_err(|e| map_error(DISK_USAGE_MAP, "open", &e))?;
        let nr_cpus = aya::util::nr_cpus().map_err(|(file, e)| EbpfError::Map {
            map: DISK_USAGE_MAP,
            action: "count CPUs".into(),
            reason: format!("{file}: {e}"),
        })?;
        Ok(Self {
            inodes: Mutex::new(inodes),
            usage: Mutex::new(usage),
            nr_cpus,
            block_size: AtomicU64::new(DEFAULT_BLOCK_SIZE),
        })
    }

    /// Starts counting the disk space of container `spec` (cgroup `cgroup_id`): its
    /// sandbox directory and the files already in it (the log files the agent writes) are
    /// charged to it with the blocks they hold now; everything the task's processes grow
    /// afterwards is charged by the programs. A container with a disk limit whose sandbox
    /// is not on ext4 is refused: its usage could not be measured.
    pub(super) fn admit(&self, cgroup_id: u64, spec: &ContainerSpec) -> Result<(), EbpfError> {
        let sandbox = &spec.sandbox;
        let fs = statfs(sandbox).map_err(|e| EbpfError::Disk {
            path: sandbox.clone(),
            reason: format!("statfs: {e}"),
        })?;
        let on_ext4 = fs.filesystem_type() == EXT4_SUPER_MAGIC;
        if !on_ext4 && spec.isolation.disk_bytes > 0 {
            return Err(EbpfError::Disk {
                path: sandbox.clone(),
                reason: "disk isolation needs the sandbox on ext4 (its block tracepoints \
                         measure usage); this filesystem is not ext4"
                    .into(),
            });
        }
        if let Ok(size) = u64::try_from(fs.block_size())
            && size > 0
        {
            self.block_size.store(size, Ordering::Relaxed);
        }
        let mut seeds = Vec::new();
        let mut seeded_blocks = 0i64;
        if on_ext4 {
            let block_size = self.block_size.load(Ordering::Relaxed).max(512);
            let mut paths = vec![sandbox.clone()];
            let entries = std::fs::read_dir(sandbox).map_err(|e| EbpfError::Disk {
                path: sandbox.clone(),
                reason: format!("list: {e}"),
            })?;
            paths.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            for path in paths {
                let meta = std::fs::symlink_metadata(&path).map_err(|e| EbpfError::Disk {
                    path: path.clone(),
                    reason: format!("stat: {e}"),
                })?;
                let blocks = i64::try_from(meta.blocks() * 512 / block_size).unwrap_or(0);
                let key = InodeKey::new(kernel_dev(meta.dev()), meta.ino());
                seeds.push((key, blocks));
                seeded_blocks += blocks;
            }
        }
        // The container's total first: the programs charge only tracked containers. A
        // total kept from before an agent restart is kept, with its inodes.
        let mut initial = vec![0i64; self.nr_cpus];
        if let Some(first) = initial.first_mut() {
            *first = seeded_blocks;
        }
        let values = PerCpuValues::try_from(initial)
            .map_err(|e| map_error(DISK_USAGE_MAP, format!("track cgroup {cgroup_id}"), &e))?;
        match self.usage().insert(cgroup_id, values, BPF_NOEXIST) {
            Err(e) if os_error(&e) == Some(libc::EEXIST) => return Ok(()),
            other => other
                .map_err(|e| map_error(DISK_USAGE_MAP, format!("track cgroup {cgroup_id}"), &e))?,
        }
        let mut inodes = self.inodes();
        for (key, blocks) in seeds {
            let charge = InodeCharge { cgroup_id, blocks };
            if let Err(e) = inodes.insert(key, charge, 0) {
                drop(inodes);
                let _ = self.forget(cgroup_id);
                return Err(map_error(
                    DISK_INODES_MAP,
                    format!("assign inode {} to cgroup {cgroup_id}", key.ino),
                    &e,
                ));
            }
        }
        Ok(())
    }

    /// Stops counting for `cgroup_id`. Its inodes stay assigned until they are freed, so
    /// a file that outlives the container is never charged to another one.
    pub(super) fn forget(&self, cgroup_id: u64) -> Result<(), EbpfError> {
        match self.usage().remove(&cgroup_id) {
            Err(e) if is_absent(&e) => Ok(()),
            other => other
                .map_err(|e| map_error(DISK_USAGE_MAP, format!("untrack cgroup {cgroup_id}"), &e)),
        }
    }

    /// Bytes of disk the container in `cgroup_id` holds now; `None` when not tracked.
    pub(super) fn bytes(&self, cgroup_id: u64) -> Result<Option<i64>, EbpfError> {
        match self.usage().get(&cgroup_id, 0) {
            Ok(per_cpu) => {
                let blocks: i64 = per_cpu.iter().fold(0i64, |sum, b| sum.wrapping_add(*b));
                let size = i64::try_from(self.block_size.load(Ordering::Relaxed)).unwrap_or(4096);
                Ok(Some(blocks.max(0).saturating_mul(size)))
            }
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(map_error(
                DISK_USAGE_MAP,
                format!("read cgroup {cgroup_id}"),
                &e,
            )),
        }
    }

    fn usage(&self) -> MutexGuard<'_, PerCpuHashMap<MapData, u64, i64>> {
        self.usage.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn inodes(&self) -> MutexGuard<'_, HashMap<MapData, InodeKey, InodeCharge>> {
        self.inodes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The kernel's `dev_t` (as ext4's tracepoints report it) of a user-space `st_dev`.
fn kernel_dev(st_dev: u64) -> u32 {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    InodeKey::kernel_dev(major, minor)
}
