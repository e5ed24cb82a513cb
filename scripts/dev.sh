#!/usr/bin/env bash
# Builds Fleet (installing what is missing) and starts `fleet dev`: a master and an agent
# on 127.0.0.1:5050. Extra arguments go to `fleet dev`. Puts `fleet` on PATH via
# ~/.cargo/bin so `fleet run` and `fleet status` work from another shell.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
echo "dev: building fleet (release)"
cargo build --release -p fleet --bin fleet
bin_dir="${CARGO_HOME:-$HOME/.cargo}/bin"
ln -sfn "$root/target/release/fleet" "$bin_dir/fleet"
echo "dev: $bin_dir/fleet -> $root/target/release/fleet"
exec "$root/target/release/fleet" dev "$@"
