#!/usr/bin/env bash
# Runs Fleet's whole test suite (unit, property, simulation, privileged cgroup/eBPF and
# end-to-end tests), installing what is missing first. Needs root: the privileged tests run
# for real and fail, naming the missing kernel feature, where they cannot.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if [ "$(id -u)" != 0 ]; then
    echo "test: the suite needs root (cgroups, BPF); run it as root" >&2
    exit 1
fi
echo "test: building"
cargo build --workspace --all-targets
echo "test: running"
cargo test --workspace --no-fail-fast "$@"
