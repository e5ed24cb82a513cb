//! Port isolation maps: the port ranges each container cgroup may bind.

/// Name of the hash map from cgroup2 id (`u64`) to [`PortRanges`].
///
/// An entry exists for every container the agent runs, even one given no ports (then it
/// may bind only port 0); a cgroup without an entry is not a container and binds freely.
pub const PORT_RANGES_MAP: &str = "PORT_RANGES";

/// The most port ranges one container may be given. Offers carry a few ranges; a task
/// given more is refused at launch rather than enforced partly.
pub const MAX_PORT_RANGES: usize = 32;

/// One inclusive range of ports, in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

/// The ports a container may bind: the first `count` entries of `ranges`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortRanges {
    pub count: u32,
    /// Always zero: keeps `ranges` at a fixed offset with no implicit padding.
    pub pad: u32,
    pub ranges: [PortRange; MAX_PORT_RANGES],
}

impl PortRanges {
    /// The ranges `ranges` (inclusive `(first, last)` pairs), or `None` when there are more
    /// than [`MAX_PORT_RANGES`].
    #[must_use]
    pub fn new(ranges: &[(u16, u16)]) -> Option<Self> {
        if ranges.len() > MAX_PORT_RANGES {
            return None;
        }
        let mut value = Self {
            count: ranges.len() as u32,
            ..Self::default()
        };
        for (slot, &(first, last)) in value.ranges.iter_mut().zip(ranges) {
            *slot = PortRange { first, last };
        }
        Some(value)
    }

    /// Whether `port` (host byte order) lies in one of the ranges. Port 0 is not special
    /// here; the programs let it through before asking.
    #[must_use]
    pub fn allows(&self, port: u16) -> bool {
        let mut i = 0;
        // A bounded loop the BPF verifier accepts: at most MAX_PORT_RANGES turns.
        while i < MAX_PORT_RANGES {
            if i as u32 >= self.count {
                return false;
            }
            let range = self.ranges[i];
            if range.first <= port && port <= range.last {
                return true;
            }
            i += 1;
        }
        false
    }
}

// SAFETY: both are #[repr(C)], made only of integers with no implicit padding (the pad
// field is explicit), and every bit pattern is a valid value.
#[cfg(feature = "user")]
unsafe impl aya::Pod for PortRange {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for PortRanges {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_has_no_hidden_padding() {
        assert_eq!(core::mem::size_of::<PortRange>(), 4);
        assert_eq!(core::mem::size_of::<PortRanges>(), 8 + 4 * MAX_PORT_RANGES);
    }

    #[test]
    fn allows_only_ports_in_its_ranges() {
        let ranges = PortRanges::new(&[(31000, 31000), (31005, 31010)]).unwrap();
        assert!(ranges.allows(31000));
        assert!(ranges.allows(31005));
        assert!(ranges.allows(31010));
        assert!(!ranges.allows(31001));
        assert!(!ranges.allows(31011));
        assert!(!ranges.allows(0));
    }

    #[test]
    fn no_ranges_allow_nothing() {
        let none = PortRanges::new(&[]).unwrap();
        assert_eq!(none.count, 0);
        assert!(!none.allows(0));
        assert!(!none.allows(31000));
    }

    #[test]
    fn refuses_more_ranges_than_fit() {
        let many: [(u16, u16); MAX_PORT_RANGES + 1] = [(1, 1); MAX_PORT_RANGES + 1];
        assert!(PortRanges::new(&many).is_none());
        assert!(PortRanges::new(&many[..MAX_PORT_RANGES]).is_some());
    }
}
