//! Device isolation: a cgroup_device program that lets a container open only its GPUs.
