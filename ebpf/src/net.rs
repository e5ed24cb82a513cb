//! Network bytes per cgroup, from cgroup_skb programs on ingress and egress.
