//! Disk accounting maps: inode ownership and per-cgroup block totals.
