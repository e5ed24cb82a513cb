//! Port isolation maps: the port ranges each container cgroup may bind.
