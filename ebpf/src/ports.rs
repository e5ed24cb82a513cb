//! Port isolation: cgroup bind4/bind6 programs that let a container bind only its ports.
