//! Network bytes per cgroup, from cgroup_skb programs on ingress and egress.
//!
//! Attached at the agent's directory of the cgroup2 tree, they see every packet a socket
//! of a process below it sends or receives, including loopback. Ingress runs in softirq,
//! where the current task is whoever the CPU interrupted, so the cgroup is the one of the
//! packet's socket (bpf_skb_cgroup_id: the cgroup the socket was created in). Lengths are
//! whole IP packets (headers included), as `skb->len` holds them at these hooks. The
//! programs never drop a packet.

use aya_ebpf::{helpers::bpf_skb_cgroup_id, macros::cgroup_skb, programs::SkBuffContext};

use crate::write::CGROUP_COUNTERS;

/// Let the packet through: these programs count, they never filter.
const PASS: i32 = 1;

/// Adds the packet's length to the rx (`ingress`) or tx counter of its socket's cgroup,
/// if that cgroup is tracked.
fn count(ctx: &SkBuffContext, ingress: bool) -> i32 {
    // SAFETY: ctx.skb.skb is the kernel's __sk_buff for this packet; the helper reads
    // the cgroup of the socket the hook runs for.
    let cgroup_id = unsafe { bpf_skb_cgroup_id(ctx.skb.skb) };
    let Some(counters) = CGROUP_COUNTERS.get_ptr_mut(cgroup_id) else {
        return PASS;
    };
    let len = u64::from(ctx.len());
    // SAFETY: this CPU's copy of the value, valid for the rest of the program (RCU).
    // cgroup programs run with migration off; a softirq may interrupt a process-context
    // run on the same CPU and add to the same copy, which can lose one packet's count
    // (accepted: no atomic add in Rust's core for this target).
    unsafe {
        if ingress {
            (*counters).net_rx_bytes = (*counters).net_rx_bytes.wrapping_add(len);
        } else {
            (*counters).net_tx_bytes = (*counters).net_tx_bytes.wrapping_add(len);
        }
    }
    PASS
}

/// cgroup_skb/ingress: a packet delivered to a socket of a process below the attach point.
#[cgroup_skb(ingress)]
pub fn net_ingress(ctx: SkBuffContext) -> i32 {
    count(&ctx, true)
}

/// cgroup_skb/egress: a packet sent by a socket of a process below the attach point.
#[cgroup_skb(egress)]
pub fn net_egress(ctx: SkBuffContext) -> i32 {
    count(&ctx, false)
}
