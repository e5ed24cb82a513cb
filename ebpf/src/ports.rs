//! Port isolation: cgroup bind4/bind6 programs that let a container bind only its ports.
//!
//! Attached at the agent's directory of the cgroup2 tree, they run for every bind(2) of
//! an AF_INET/AF_INET6 socket by a process below it. A process whose cgroup has no entry
//! in PORT_RANGES is not a container and binds freely; port 0 (the kernel picks an
//! ephemeral port) is always allowed; any other port must lie in the container's ranges.
//! Returning 0 makes bind(2) fail with EPERM.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::bpf_get_current_cgroup_id,
    macros::{cgroup_sock_addr, map},
    maps::HashMap,
    programs::SockAddrContext,
};
use fleet_ebpf_common::{MAX_TRACKED_CGROUPS, ports::PortRanges};

/// cgroup2 id -> the port ranges that container may bind. Written only by the agent.
#[map(name = "PORT_RANGES")]
static PORT_RANGES: HashMap<u64, PortRanges> =
    HashMap::pinned(MAX_TRACKED_CGROUPS, BPF_F_NO_PREALLOC);

const ALLOW: i32 = 1;
const DENY: i32 = 0;

fn check_bind(ctx: &SockAddrContext) -> i32 {
    // SAFETY: the helper has no preconditions; bind runs in the binding task's context.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: the value stays valid for the rest of the program (RCU).
    let Some(ranges) = (unsafe { PORT_RANGES.get(cgroup_id) }) else {
        return ALLOW;
    };
    // SAFETY: the context is the kernel's bpf_sock_addr for this bind; user_port is
    // readable (a 4-byte load) in bind4/bind6 programs.
    let raw = unsafe { core::ptr::read_volatile(&raw const (*ctx.sock_addr).user_port) };
    // The port as the caller's sockaddr holds it: network byte order in the low 16 bits.
    let port = u16::from_be(raw as u16);
    if port == 0 || ranges.allows(port) {
        ALLOW
    } else {
        DENY
    }
}

/// cgroup/bind4: bind(2) of an AF_INET socket.
#[cgroup_sock_addr(bind4)]
pub fn port_bind4(ctx: SockAddrContext) -> i32 {
    check_bind(&ctx)
}

/// cgroup/bind6: bind(2) of an AF_INET6 socket.
#[cgroup_sock_addr(bind6)]
pub fn port_bind6(ctx: SockAddrContext) -> i32 {
    check_bind(&ctx)
}
