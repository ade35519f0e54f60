#!/usr/bin/env bash
# Builds fleetup against russh with tests/bench/russh-held-session.patch applied, for
# measurement only: what a held SSH session would cost if russh changed (README, "Memory
# at 1000 hosts, and what russh's share would be if russh changed"). The shipped build
# never uses it. The patch boxes the two large variants of russh's messages between a
# session and its handle (a tokio channel block holds 32 of them), shrinks the session's
# write buffers back after a large packet, and keeps one rekey timer instead of making one
# for every packet. Prints the path of the binary built.
#
# Usage: tests/bench/russh-changed.sh [--no-default-features]
#   --no-default-features   without jemalloc, for heaptrack (as memory.sh builds)
# e.g. tests/bench/cpu.sh --fleetup "$(tests/bench/russh-changed.sh)"; memory.sh --russh-changed
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FEATURES=() SUFFIX=""
[ $# -le 1 ] || { echo "one argument at most" >&2; exit 2; }
case "${1:-}" in
    "") ;;
    --no-default-features) FEATURES=(--no-default-features) SUFFIX=-system-alloc ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
esac
cd "$ROOT"
# The russh this checkout locks, as cargo fetched it.
cargo fetch --locked --quiet
SRC=$(cargo metadata --format-version 1 --locked | python3 -c '
import json, os, sys
packages = json.load(sys.stdin)["packages"]
print(next(os.path.dirname(p["manifest_path"]) for p in packages if p["name"] == "russh"))')
OUT="$ROOT/target/russh-changed"
COPY="$OUT/$(basename "$SRC")"
PATCH="$ROOT/tests/bench/russh-held-session.patch"
# Made again when the patch changed since the copy was.
if ! cmp -s "$PATCH" "$COPY/.patched"; then
    rm -rf "$COPY"
    mkdir -p "$OUT"
    cp -r "$SRC" "$COPY"
    patch -s -p1 -d "$COPY" <"$PATCH"
    cp "$PATCH" "$COPY/.patched"
fi
# A path patch rewrites Cargo.lock's entry for russh: the checkout's own is put back.
cp Cargo.lock "$OUT/Cargo.lock.saved"
trap 'cp "$OUT/Cargo.lock.saved" "$ROOT/Cargo.lock"' EXIT
TARGET="$OUT/build$SUFFIX"
cargo build --release --quiet -p fleetup --bin fleetup ${FEATURES[@]+"${FEATURES[@]}"} \
    --config "patch.crates-io.russh.path=\"$COPY\"" --target-dir "$TARGET" >&2
echo "$TARGET/release/fleetup"
