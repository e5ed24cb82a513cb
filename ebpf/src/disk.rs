//! Disk space per cgroup, from ext4 block reservation, allocation and freeing tracepoints.
