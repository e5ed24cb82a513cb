#!/usr/bin/env bash
# Builds the Debian package of Fleet (the `fleet` binary, its systemd units, example configs
# in /etc/fleet and the operator docs; see [package.metadata.deb] in cli/Cargo.toml) and
# prints its path. Installs cargo-deb first when it is missing.
#
# Arguments are passed to cargo-deb, e.g. `scripts/deb.sh --deb-revision 2` or
# `scripts/deb.sh --output /tmp/debs/`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
export PATH="$cargo_home/bin:$PATH"
cd "$root"

say() { printf 'deb: %s\n' "$*" >&2; }

if ! cargo deb --version >/dev/null 2>&1; then
    say "cargo-deb: installing (cargo install cargo-deb --locked)"
    cargo install --quiet --locked cargo-deb
fi
command -v dpkg-deb >/dev/null || { say "error: dpkg-deb not found (Debian: apt-get install dpkg)"; exit 1; }

start=$SECONDS
# cargo-deb builds `cargo build --release -p fleet`, strips the binary and writes
# target/debian/fleet_<version>-<revision>_<arch>.deb; its last line on stdout is the path.
# --locked: the package is built from Cargo.lock as committed.
deb="$(cargo deb -p fleet --locked "$@" | tail -n1)"
[ -f "$deb" ] || { say "error: cargo deb printed no package path (got '$deb')"; exit 1; }
say "built in $((SECONDS - start)) s: $(du -h "$deb" | cut -f1)"
echo "$deb"
