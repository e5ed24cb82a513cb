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
# The end-to-end tests start the binary the workspace build just made.
export FLEET_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/fleet"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --lib --bins --tests --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
passed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^passed/) n += $i } END { print n + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^failed/) n += $i } END { print n + 0 }' "$log")
ignored=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^ignored/) n += $i } END { print n + 0 }' "$log")
echo
echo "total: $passed passed, $failed failed, $ignored skipped"
if [ "$passed" -eq 0 ]; then
    echo "test: no test ran" >&2
    exit 1
fi
exit "$status"
