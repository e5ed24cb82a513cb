#!/usr/bin/env bash
# Prepares a machine to build and test Fleet: the pinned stable toolchain, the pinned
# nightly (with rust-src) that builds the eBPF programs in ebpf/, bpf-linker, and cargo-deb
# (scripts/deb.sh, tests/tests/package.rs).
# Idempotent: each step checks first and does nothing when its part is already there.
#
# Pins are read from rust-toolchain.toml (stable) and ebpf/rust-toolchain.toml (nightly),
# the same files rustup and agent/build.rs read.
#
# Environment:
#   FLEET_LLVM_PREFIX  where the libLLVM symlinks for bpf-linker go
#                      (default: $CARGO_HOME/fleet-llvm/<nightly>)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
export PATH="$cargo_home/bin:$PATH"
start=$SECONDS

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# channel = "..." from a rust-toolchain.toml
toolchain_channel() {
    sed -n 's/^[[:space:]]*channel[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$1" | head -n1
}

# Installs the Debian packages named that are missing; apt-get update only when needed.
apt_ensure() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "apt: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

command -v rustup >/dev/null || die "rustup not found on PATH ($cargo_home/bin); install rustup first"
# chromium: tests/tests/web_ui.rs renders the master's web UI in headless Chromium.
# dpkg-dev: dpkg-shlibdeps, which cargo-deb runs to compute the package's Depends.
apt_ensure gcc libc6-dev pkg-config chromium dpkg-dev

# 1. The pinned stable toolchain, with the components the workspace uses.
stable="$(toolchain_channel "$root/rust-toolchain.toml")"
[ -n "$stable" ] || die "no channel in $root/rust-toolchain.toml"
installed="$(rustup component list --toolchain "$stable" --installed 2>/dev/null || true)"
if grep -q '^rustfmt' <<<"$installed" && grep -q '^clippy' <<<"$installed"; then
    say "stable $stable with rustfmt, clippy: present"
else
    say "stable $stable: installing with rustfmt, clippy"
    rustup toolchain install "$stable" --profile minimal --component rustfmt,clippy --no-self-update
fi

# 2. The pinned nightly with rust-src (for -Z build-std=core on bpfel-unknown-none), and
#    rustfmt and clippy for working on ebpf/.
nightly="$(toolchain_channel "$root/ebpf/rust-toolchain.toml")"
[ -n "$nightly" ] || die "no channel in $root/ebpf/rust-toolchain.toml"
installed="$(rustup component list --toolchain "$nightly" --installed 2>/dev/null || true)"
if grep -q '^rust-src' <<<"$installed" && grep -q '^rustfmt' <<<"$installed" \
    && grep -q '^clippy' <<<"$installed"; then
    say "nightly $nightly with rust-src, rustfmt, clippy: present"
else
    say "nightly $nightly: installing with rust-src, rustfmt, clippy"
    rustup toolchain install "$nightly" --profile minimal --component rust-src,rustfmt,clippy \
        --no-self-update
fi

# 3. bpf-linker, linked against the pinned nightly's own libLLVM (Debian's LLVM is too old).
sysroot="$(rustc "+$nightly" --print sysroot)"
llvm_lib="$(find "$sysroot/lib" -maxdepth 1 -name 'libLLVM.so.*' | head -n1)"
[ -n "$llvm_lib" ] || die "no libLLVM.so.* in $sysroot/lib"
prefix="${FLEET_LLVM_PREFIX:-$cargo_home/fleet-llvm/$nightly}"
mkdir -p "$prefix/lib"
for name in libLLVM.so "$(basename "$llvm_lib")"; do
    [ "$(readlink "$prefix/lib/$name" 2>/dev/null)" = "$llvm_lib" ] || ln -sfn "$llvm_lib" "$prefix/lib/$name"
done

linker_ok() {
    command -v bpf-linker >/dev/null || return 1
    # The binary must resolve the pinned nightly's libLLVM through its rpath.
    ldd "$(command -v bpf-linker)" 2>/dev/null | grep -q "libLLVM.*=> $prefix/lib/" || return 1
    bpf-linker --version >/dev/null 2>&1
}
if linker_ok; then
    say "bpf-linker: present ($(bpf-linker --version 2>/dev/null | head -n1), LLVM from $nightly)"
else
    say "bpf-linker: building against $llvm_lib (about a minute)"
    LLVM_PREFIX="$prefix" cargo "+$stable" install --quiet --locked --force bpf-linker
    linker_ok || die "bpf-linker was installed but does not load $prefix/lib/libLLVM.so"
    say "bpf-linker: installed ($(bpf-linker --version | head -n1))"
fi

# 4. cargo-deb, which builds the .deb (scripts/deb.sh) and packages the debug binary in
#    tests/tests/package.rs.
if cargo "+$stable" deb --version >/dev/null 2>&1; then
    say "cargo-deb: present ($(cargo "+$stable" deb --version 2>/dev/null | head -n1))"
else
    say "cargo-deb: installing (about two minutes)"
    cargo "+$stable" install --quiet --locked cargo-deb
    say "cargo-deb: installed ($(cargo "+$stable" deb --version | head -n1))"
fi

say "done in $((SECONDS - start)) s"
