//! Disk accounting maps: which container cgroup owns each inode (and how many filesystem
//! blocks it has been charged for it), and the blocks each container holds in all.

/// Name of the hash map from [`InodeKey`] to [`InodeCharge`].
pub const DISK_INODES_MAP: &str = "DISK_INODES";
/// Capacity of [`DISK_INODES_MAP`]: inodes owned by containers at once, on one agent.
pub const MAX_TRACKED_INODES: u32 = 1 << 18;
/// Name of the per-CPU hash map from cgroup2 id (`u64`) to blocks held (`i64`): each CPU
/// adds what it saw (a CPU may see more frees than allocations, hence signed); the agent
/// sums the copies.
pub const DISK_USAGE_MAP: &str = "DISK_USAGE";

/// An inode, as ext4's tracepoints name it: the kernel's `dev_t` (`major << 20 | minor`,
/// not the user-space `st_dev` encoding) and the inode number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub ino: u64,
    pub dev: u32,
    /// Always zero: keys are compared byte for byte.
    pub pad: u32,
}

impl InodeKey {
    /// The key of inode `ino` on the device with kernel `dev_t` `dev`.
    #[must_use]
    pub const fn new(dev: u32, ino: u64) -> Self {
        Self { ino, dev, pad: 0 }
    }

    /// The kernel `dev_t` of a device with these numbers (`MKDEV`).
    #[must_use]
    pub const fn kernel_dev(major: u32, minor: u32) -> u32 {
        (major << 20) | (minor & 0xf_ffff)
    }
}

/// The container an inode's blocks are charged to, and how many are charged now.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InodeCharge {
    /// cgroup2 id of the owning container.
    pub cgroup_id: u64,
    /// Filesystem blocks charged for this inode (allocated plus delayed-allocation
    /// reservations); changed with atomic adds.
    pub blocks: i64,
}

// SAFETY: both are #[repr(C)], made of integers only with no implicit padding (the pad
// field is explicit), and every bit pattern is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for InodeKey {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for InodeCharge {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_hidden_padding() {
        assert_eq!(core::mem::size_of::<InodeKey>(), 16);
        assert_eq!(core::mem::size_of::<InodeCharge>(), 16);
    }

    #[test]
    fn kernel_dev_packs_major_and_minor() {
        assert_eq!(InodeKey::kernel_dev(254, 0), 254 << 20);
        assert_eq!(InodeKey::kernel_dev(8, 17), (8 << 20) | 17);
    }
}
