//! The map keys and values shared by the kernel programs in ebpf/ and the agent: plain
//! `#[repr(C)]` data, laid out identically on both sides.
#![no_std]

pub mod devices;
pub mod disk;
pub mod ports;

/// Name of the per-CPU hash map from cgroup2 id (`u64`) to [`CgroupCounters`].
///
/// An entry exists only for a cgroup the agent tracks; the programs count nothing for a
/// cgroup without one, so an uncontained process costs a single failed lookup.
pub const CGROUP_COUNTERS_MAP: &str = "CGROUP_COUNTERS";

/// Capacity of [`CGROUP_COUNTERS_MAP`]: the most containers one agent tracks at once.
pub const MAX_TRACKED_CGROUPS: u32 = 4096;

/// Usage of one cgroup, as one CPU saw it. The map is per-CPU, so each CPU adds to its own
/// copy without atomics; the agent sums the copies.
///
/// Fields not yet filled by a program stay zero. They are part of the layout now so that a
/// pinned map keeps its value size when the programs that fill them arrive.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupCounters {
    /// Bytes reported written by write(2), pwrite64(2), writev(2), pwritev(2), pwritev2(2)
    /// (the positive return values), to any kind of file descriptor.
    pub bytes_written: u64,
    /// Number of those calls that wrote at least one byte.
    pub write_calls: u64,
    /// CPU time in nanoseconds (not filled yet).
    pub cpu_ns: u64,
    /// Network bytes received (not filled yet).
    pub net_rx_bytes: u64,
    /// Network bytes sent (not filled yet).
    pub net_tx_bytes: u64,
    /// Disk space held, in bytes; signed because one CPU may see more frees than
    /// allocations (not filled yet).
    pub disk_bytes: i64,
}

impl CgroupCounters {
    /// Adds `other` field by field (wrapping, as the kernel side does), for summing the
    /// per-CPU copies.
    #[must_use]
    pub const fn plus(self, other: Self) -> Self {
        Self {
            bytes_written: self.bytes_written.wrapping_add(other.bytes_written),
            write_calls: self.write_calls.wrapping_add(other.write_calls),
            cpu_ns: self.cpu_ns.wrapping_add(other.cpu_ns),
            net_rx_bytes: self.net_rx_bytes.wrapping_add(other.net_rx_bytes),
            net_tx_bytes: self.net_tx_bytes.wrapping_add(other.net_tx_bytes),
            disk_bytes: self.disk_bytes.wrapping_add(other.disk_bytes),
        }
    }
}

// SAFETY: CgroupCounters is #[repr(C)], made only of u64/i64 fields (no padding, no
// pointers), and every bit pattern is a valid value, so it can be copied to and from the
// kernel's map memory byte for byte.
#[cfg(feature = "user")]
unsafe impl aya::Pod for CgroupCounters {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_no_padding() {
        assert_eq!(core::mem::size_of::<CgroupCounters>(), 48);
        assert_eq!(core::mem::align_of::<CgroupCounters>(), 8);
    }

    #[test]
    fn plus_adds_each_field() {
        let a = CgroupCounters {
            bytes_written: 10,
            write_calls: 1,
            disk_bytes: -4,
            ..CgroupCounters::default()
        };
        let b = CgroupCounters {
            bytes_written: 5,
            write_calls: 2,
            disk_bytes: 6,
            ..CgroupCounters::default()
        };
        let sum = a.plus(b);
        assert_eq!(sum.bytes_written, 15);
        assert_eq!(sum.write_calls, 3);
        assert_eq!(sum.disk_bytes, 2);
    }
}
