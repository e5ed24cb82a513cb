//! The kernel programs of Fleet's agent: usage accounting (bytes written, disk space, network
//! bytes) and isolation (port binds, device access), each keyed by the cgroup2 id of the
//! container it concerns. One module per concern; the maps they share with the agent are
//! described in fleet_ebpf_common.
#![no_std]
#![no_main]

mod devices;
mod disk;
mod net;
mod ports;
mod write;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
