//! Disk space per container, from ext4's block tracepoints: no directory walk, ever.
//!
//! What `du` counts for a file is its `st_blocks`: blocks allocated plus, on ext4, blocks
//! reserved for delayed allocation (data written but not yet placed on disk). Those change
//! at four kernel events, each with a tracepoint that names the inode:
//! - `ext4_da_reserve_space`: a write into a hole reserves blocks (in the writer's context);
//! - `ext4_da_release_space`: reserved blocks are dropped (truncate, punch before writeback);
//! - `ext4_allocate_blocks`: blocks allocated outside delayed allocation (directories,
//!   fallocate, O_DIRECT, xattrs); those flagged DELALLOC_RESV only turn an earlier
//!   reservation into an allocation, which changes nothing in the total;
//! - `ext4_free_blocks`: blocks freed (truncate, unlink, punch), in any context.
//!
//! Each inode is owned by the container that first grew it (the current task's cgroup2
//! id, when the agent tracks that cgroup), or by the container the agent assigned it to
//! (its sandbox directory and log files, written by the agent itself). Every later event
//! on the inode, whoever causes it (writeback threads, the agent, another process), is
//! charged to that owner. `ext4_free_inode` forgets the inode.

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::bpf_get_current_cgroup_id,
    macros::{map, tracepoint},
    maps::{HashMap, PerCpuHashMap},
    programs::TracePointContext,
};
use fleet_ebpf_common::{
    MAX_TRACKED_CGROUPS,
    disk::{InodeCharge, InodeKey, MAX_TRACKED_INODES},
};

/// Inode -> owner and blocks charged. Inserted by the programs (first growth in a tracked
/// cgroup) or by the agent (a container's sandbox and logs); removed when the inode is
/// freed.
#[map(name = "DISK_INODES")]
static DISK_INODES: HashMap<InodeKey, InodeCharge> =
    HashMap::pinned(MAX_TRACKED_INODES, BPF_F_NO_PREALLOC);

/// cgroup2 id -> blocks held, per CPU. The agent inserts an entry per tracked container;
/// the programs only add to existing entries.
#[map(name = "DISK_USAGE")]
static DISK_USAGE: PerCpuHashMap<u64, i64> =
    PerCpuHashMap::pinned(MAX_TRACKED_CGROUPS, BPF_F_NO_PREALLOC);

/// Offsets in the ext4 tracepoint records (the format files under
/// /sys/kernel/tracing/events/ext4/): every one used here starts with `dev_t dev` at 8 and
/// `ino_t ino` at 16.
const DEV: usize = 8;
const INO: usize = 16;
/// `int reserve_blocks` of ext4_da_reserve_space, `int freed_blocks` of
/// ext4_da_release_space, `unsigned int len` of ext4_allocate_blocks, `unsigned long
/// count` of ext4_free_blocks: all at 32.
const AMOUNT: usize = 32;
/// `unsigned int flags` of ext4_allocate_blocks.
const ALLOC_FLAGS: usize = 72;
/// EXT4_MB_DELALLOC_RESERVED: the allocation consumes an earlier reservation.
const DELALLOC_RESERVED: u32 = 0x0400;

fn inode(ctx: &TracePointContext) -> Option<InodeKey> {
    // SAFETY: the ext4 records attached to hold a u32 dev_t at DEV and a u64 ino at INO.
    let dev = unsafe { ctx.read_at::<u32>(DEV) }.ok()?;
    // SAFETY: as above.
    let ino = unsafe { ctx.read_at::<u64>(INO) }.ok()?;
    Some(InodeKey::new(dev, ino))
}

/// Adds `blocks` (> 0) to this CPU's count of `cgroup_id`, if tracked.
fn add_usage(cgroup_id: u64, blocks: i64) {
    if let Some(usage) = DISK_USAGE.get_ptr_mut(cgroup_id) {
        // SAFETY: this CPU's copy, valid for the rest of the program (RCU); tracepoint
        // programs do not nest on one CPU, so nothing else writes it meanwhile.
        unsafe { *usage = (*usage).wrapping_add(blocks) };
    }
}

/// Adds `blocks` to an inode's charge and returns its owner.
///
/// The BPF target has no atomic read-modify-write in Rust's core, so this is a plain
/// add: two CPUs changing the same inode in the same instant can lose one of the two
/// changes to the inode's own count. That count only bounds what a free may take back;
/// the per-container totals (per-CPU) are exact.
///
/// # Safety
/// `entry` must point to a live DISK_INODES value.
unsafe fn add_blocks(entry: *mut InodeCharge, blocks: i64) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe {
        (*entry).blocks = (*entry).blocks.wrapping_add(blocks);
        (*entry).cgroup_id
    }
}

/// Charges `blocks` new blocks of `key` to its owner; when it has none yet and `adopt`,
/// the current task's container (if tracked) becomes its owner.
fn charge(key: &InodeKey, blocks: i64, adopt: bool) {
    if blocks <= 0 {
        return;
    }
    if let Some(entry) = DISK_INODES.get_ptr_mut(key) {
        // SAFETY: the entry stays valid for the rest of the program (RCU, no prealloc).
        // The owner never changes once set.
        let owner = unsafe { add_blocks(entry, blocks) };
        add_usage(owner, blocks);
        return;
    }
    if !adopt {
        return;
    }
    // SAFETY: the helper has no preconditions.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if DISK_USAGE.get_ptr_mut(cgroup_id).is_none() {
        return;
    }
    let charge = InodeCharge { cgroup_id, blocks };
    if DISK_INODES.insert(key, &charge, BPF_NOEXIST.into()).is_ok() {
        add_usage(cgroup_id, blocks);
    } else {
        // Another CPU adopted it first (or the map is full: then nothing is charged).
        charge_existing(key, blocks);
    }
}

fn charge_existing(key: &InodeKey, blocks: i64) {
    if let Some(entry) = DISK_INODES.get_ptr_mut(key) {
        // SAFETY: as in `charge`.
        let owner = unsafe { add_blocks(entry, blocks) };
        add_usage(owner, blocks);
    }
}

/// Takes back up to `blocks` blocks of `key` from its owner: never more than the inode was
/// charged, so blocks it held before it was tracked are not subtracted.
fn uncharge(key: &InodeKey, blocks: i64) {
    if blocks <= 0 {
        return;
    }
    let Some(entry) = DISK_INODES.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: as in `charge`.
    let charged = unsafe { (*entry).blocks };
    let taken = if blocks < charged { blocks } else { charged };
    if taken <= 0 {
        return;
    }
    // SAFETY: as in `charge`.
    let owner = unsafe { add_blocks(entry, -taken) };
    add_usage(owner, -taken);
}

/// ext4/ext4_da_reserve_space: a write reserved `reserve_blocks` blocks for delayed
/// allocation, in the writer's context.
#[tracepoint]
pub fn disk_reserve(ctx: TracePointContext) -> u32 {
    if let Some(key) = inode(&ctx) {
        // SAFETY: an int at AMOUNT in this record.
        let blocks = unsafe { ctx.read_at::<i32>(AMOUNT) }.unwrap_or(0);
        charge(&key, i64::from(blocks), true);
    }
    0
}

/// ext4/ext4_da_release_space: `freed_blocks` reserved blocks dropped unused.
#[tracepoint]
pub fn disk_release(ctx: TracePointContext) -> u32 {
    if let Some(key) = inode(&ctx) {
        // SAFETY: an int at AMOUNT in this record.
        let blocks = unsafe { ctx.read_at::<i32>(AMOUNT) }.unwrap_or(0);
        uncharge(&key, i64::from(blocks));
    }
    0
}

/// ext4/ext4_allocate_blocks: `len` blocks allocated; counted unless they consume a
/// delayed-allocation reservation already counted.
#[tracepoint]
pub fn disk_allocate(ctx: TracePointContext) -> u32 {
    if let Some(key) = inode(&ctx) {
        // SAFETY: a u32 at ALLOC_FLAGS and at AMOUNT in this record.
        let flags = unsafe { ctx.read_at::<u32>(ALLOC_FLAGS) }.unwrap_or(DELALLOC_RESERVED);
        if flags & DELALLOC_RESERVED == 0 {
            // SAFETY: as above.
            let blocks = unsafe { ctx.read_at::<u32>(AMOUNT) }.unwrap_or(0);
            charge(&key, i64::from(blocks), true);
        }
    }
    0
}

/// ext4/ext4_free_blocks: `count` blocks freed, in whatever context frees them.
#[tracepoint]
pub fn disk_free(ctx: TracePointContext) -> u32 {
    if let Some(key) = inode(&ctx) {
        // SAFETY: an unsigned long at AMOUNT in this record.
        let blocks = unsafe { ctx.read_at::<u64>(AMOUNT) }.unwrap_or(0);
        uncharge(&key, i64::try_from(blocks).unwrap_or(i64::MAX));
    }
    0
}

/// ext4/ext4_free_inode: the inode is gone; whatever is still charged for it (blocks the
/// other events missed) is taken back, and the inode forgotten so its number can be reused.
#[tracepoint]
pub fn disk_free_inode(ctx: TracePointContext) -> u32 {
    if let Some(key) = inode(&ctx) {
        uncharge(&key, i64::MAX);
        let _ = DISK_INODES.remove(&key);
    }
    0
}
