//! Device isolation: a cgroup_device program that lets a container open only its GPUs.
//!
//! Attached at the agent's directory of the cgroup2 tree, it runs for every device access
//! (open, mknod) by a process below it. A process whose cgroup has no entry in
//! DEVICE_ACCESS is not a container; for a container, `DeviceAccess::allows` decides for
//! char devices (NVIDIA's major and the GPU control devices), and everything else is left
//! to the other rules. Returning 0 makes the access fail with EPERM.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::bpf_get_current_cgroup_id,
    macros::{cgroup_device, map},
    maps::HashMap,
    programs::DeviceContext,
};
use fleet_ebpf_common::{MAX_TRACKED_CGROUPS, devices::DeviceAccess};

/// cgroup2 id -> what that container may open. Written only by the agent.
#[map(name = "DEVICE_ACCESS")]
static DEVICE_ACCESS: HashMap<u64, DeviceAccess> =
    HashMap::pinned(MAX_TRACKED_CGROUPS, BPF_F_NO_PREALLOC);

/// `BPF_DEVCG_DEV_CHAR`, the low 16 bits of `access_type` for a character device.
const DEV_CHAR: u32 = 2;

/// cgroup/dev: one device access.
#[cgroup_device]
pub fn device_access(ctx: DeviceContext) -> i32 {
    // SAFETY: the helper has no preconditions; the access runs in the task's context.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: the value stays valid for the rest of the program (RCU).
    let Some(access) = (unsafe { DEVICE_ACCESS.get(cgroup_id) }) else {
        return 1;
    };
    // SAFETY: the context is the kernel's bpf_cgroup_dev_ctx for this access.
    let (kind, major, minor) = unsafe {
        (
            (*ctx.device).access_type & 0xffff,
            (*ctx.device).major,
            (*ctx.device).minor,
        )
    };
    if kind != DEV_CHAR || access.allows(major, minor) {
        1
    } else {
        0
    }
}
