//! Device isolation maps: the GPU device minors each container cgroup may open.
