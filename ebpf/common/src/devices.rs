//! Device isolation maps: the GPU device minors each container cgroup may open.

/// Name of the hash map from cgroup2 id (`u64`) to [`DeviceAccess`].
pub const DEVICE_ACCESS_MAP: &str = "DEVICE_ACCESS";

/// The major number of NVIDIA's GPU character devices (`/dev/nvidia<N>`, `/dev/nvidiactl`).
pub const NVIDIA_MAJOR: u32 = 195;
/// `/dev/nvidiactl`'s minor.
pub const NVIDIACTL_MINOR: u32 = 255;
/// The most GPUs one container may be given.
pub const MAX_GPUS: usize = 16;
/// The most other control devices (`/dev/nvidia-uvm`, `/dev/nvidia-uvm-tools`, whose
/// major is dynamic) a container with GPUs may open.
pub const MAX_CONTROL: usize = 4;

/// What one container may open among the GPU devices. A container with an entry may open
/// `195:<minor>` only for its `minors`, and `195:255` and the `control` devices only if it
/// has at least one GPU. Devices of other majors are not this map's business.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceAccess {
    pub gpu_count: u32,
    pub control_count: u32,
    pub minors: [u32; MAX_GPUS],
    /// `major << 32 | minor` of each control device.
    pub control: [u64; MAX_CONTROL],
}

impl DeviceAccess {
    /// Whether a char device `major:minor` may be opened under this entry.
    #[must_use]
    pub fn allows(&self, major: u32, minor: u32) -> bool {
        let has_gpu = self.gpu_count > 0;
        if major == NVIDIA_MAJOR {
            if minor == NVIDIACTL_MINOR {
                return has_gpu;
            }
            let mut i = 0;
            while i < MAX_GPUS {
                if (i as u32) < self.gpu_count && self.minors[i] == minor {
                    return true;
                }
                i += 1;
            }
            return false;
        }
        let device = (u64::from(major) << 32) | u64::from(minor);
        let mut i = 0;
        while i < MAX_CONTROL {
            if (i as u32) < self.control_count && self.control[i] == device {
                return has_gpu;
            }
            i += 1;
        }
        true
    }
}

// SAFETY: #[repr(C)], u32/u64 fields laid out without padding (4 + 4 + 64 bytes, then
// u64s at offset 72), every bit pattern valid.
#[cfg(feature = "user")]
unsafe impl aya::Pod for DeviceAccess {}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(minors: &[u32], control: &[(u32, u32)]) -> DeviceAccess {
        let mut a = DeviceAccess {
            gpu_count: minors.len() as u32,
            control_count: control.len() as u32,
            ..DeviceAccess::default()
        };
        a.minors[..minors.len()].copy_from_slice(minors);
        for (i, (ma, mi)) in control.iter().enumerate() {
            a.control[i] = (u64::from(*ma) << 32) | u64::from(*mi);
        }
        a
    }

    #[test]
    fn only_assigned_gpus_and_their_control_devices() {
        let with = access(&[1], &[(509, 0)]);
        assert!(with.allows(195, 1));
        assert!(!with.allows(195, 0));
        assert!(with.allows(195, 255));
        assert!(with.allows(509, 0));
        assert!(with.allows(1, 3), "/dev/null is not ours to judge");
        let without = access(&[], &[(509, 0)]);
        assert!(!without.allows(195, 0));
        assert!(!without.allows(195, 255));
        assert!(!without.allows(509, 0));
        assert!(without.allows(1, 3));
    }

    #[test]
    fn layout_has_no_padding() {
        assert_eq!(core::mem::size_of::<DeviceAccess>(), 8 + 64 + 32);
    }
}
