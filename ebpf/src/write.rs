//! Bytes written per cgroup: tracepoints on the write(2) family's exits that add what
//! processes of tracked cgroups wrote to per-cgroup, per-CPU counters
//! (fleet_ebpf_common::CgroupCounters).

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::bpf_get_current_cgroup_id,
    macros::{map, tracepoint},
    maps::PerCpuHashMap,
    programs::TracePointContext,
};
use fleet_ebpf_common::{CgroupCounters, MAX_TRACKED_CGROUPS};

/// cgroup2 id -> counters. The agent inserts a zeroed entry for each container cgroup
/// it tracks and removes it when done; the programs only add to existing entries.
/// BPF_F_NO_PREALLOC: a removed entry is freed after an RCU grace period instead of being
/// recycled at once, so a program still holding its pointer never adds to another cgroup.
#[map(name = "CGROUP_COUNTERS")]
pub static CGROUP_COUNTERS: PerCpuHashMap<u64, CgroupCounters> =
    PerCpuHashMap::pinned(MAX_TRACKED_CGROUPS, BPF_F_NO_PREALLOC);

/// Offset of `long ret` in every syscalls/sys_exit_* record: 8 bytes of common fields,
/// `int __syscall_nr`, 4 bytes of padding.
const SYS_EXIT_RET_OFFSET: usize = 16;

/// Attached to syscalls/sys_exit_{write,pwrite64,writev,pwritev,pwritev2}: adds the bytes
/// each call reports written to the caller's cgroup, if that cgroup is tracked.
#[tracepoint]
pub fn count_bytes_written(ctx: TracePointContext) -> u32 {
    // SAFETY: the helper has no preconditions; it reads the current task's cgroup2 id.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // The one lookup every untracked process pays.
    let Some(counters) = CGROUP_COUNTERS.get_ptr_mut(cgroup_id) else {
        return 0;
    };
    // SAFETY: every sys_exit_* record holds an i64 at this offset (see the format file
    // under /sys/kernel/tracing/events/syscalls/).
    let Ok(ret) = (unsafe { ctx.read_at::<i64>(SYS_EXIT_RET_OFFSET) }) else {
        return 0;
    };
    if ret > 0 {
        // SAFETY: the pointer is this CPU's copy of the value, valid for the rest of the
        // program (RCU). Tracepoint programs do not nest on one CPU and run with
        // preemption off, so nothing else writes this copy meanwhile.
        unsafe {
            (*counters).bytes_written = (*counters).bytes_written.wrapping_add(ret as u64);
            (*counters).write_calls = (*counters).write_calls.wrapping_add(1);
        }
    }
    0
}
