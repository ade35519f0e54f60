#!/usr/bin/env bash
# Where a large run's memory goes: starts the test fleet (tests/fleet) with N hosts at
# v4.65.0, runs the shipped upgrade over it under heaptrack, and prints the peak heap split
# by owner (the SSH sessions, what waiting hosts' pre-flights found, the hosts' variables,
# the hosts in flight, the rest) and per held connection; then the same run under GNU time
# for the peak resident set. Issue 19: "<= 80 MB peak RSS with every connection held".
# `--workload status` measures `fleetup status` of the same fleet instead (read-only: no
# connection waits, every host's report is kept to the end).
#
# Usage: tests/bench/memory.sh [--hosts N] [--serial S] [--forks F] [--workload W]
#                              [--russh-changed] [--keep]
#   defaults: 300 hosts, serial 100, forks 100 (two batches wait, connections held),
#   workload upgrade; --russh-changed: fleetup built against russh with
#   tests/bench/russh-held-session.patch (measurement only, see russh-changed.sh)
# Needs root (the fleet runs sshd), heaptrack (apt install heaptrack) and GNU time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HOSTS=300 SERIAL=100 FORKS=100 WORKLOAD=upgrade KEEP=0 RUSSH_CHANGED=0
while [ $# -gt 0 ]; do
    case "$1" in
        --hosts) HOSTS=$2; shift 2 ;;
        --serial) SERIAL=$2; shift 2 ;;
        --forks) FORKS=$2; shift 2 ;;
        --workload) WORKLOAD=$2; shift 2 ;;
        --russh-changed) RUSSH_CHANGED=1; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
log() { printf '[memory %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

need_apt=()
command -v heaptrack >/dev/null || need_apt+=(heaptrack)
[ -x /usr/bin/time ] || need_apt+=(time)
if [ ${#need_apt[@]} -gt 0 ]; then
    log "apt-get install ${need_apt[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
SIM="$ROOT/target/release/fleet-sim"
# heaptrack sees only the system allocator's calls: its run is of a build without jemalloc,
# the peak RSS is the shipped build's.
if [ "$RUSSH_CHANGED" = 1 ]; then
    log "cargo build --release -p fleet-sim; fleetup's two builds against russh changed"
    (cd "$ROOT" && cargo build --release --quiet -p fleet-sim)
    FLEETUP=$("$ROOT/tests/bench/russh-changed.sh")
    HEAP_FLEETUP=$("$ROOT/tests/bench/russh-changed.sh" --no-default-features)
else
    log "cargo build --release --bins"
    (cd "$ROOT" && cargo build --release --bins --quiet)
    FLEETUP="$ROOT/target/release/fleetup"
    log "cargo build --release --no-default-features (for heaptrack)"
    (cd "$ROOT" && cargo build --release --quiet -p fleetup --bin fleetup \
        --no-default-features --target-dir "$ROOT/target/system-alloc")
    HEAP_FLEETUP="$ROOT/target/system-alloc/release/fleetup"
fi

# shellcheck source=tests/bench/fleet.sh
. "$ROOT/tests/bench/fleet.sh"
bench_work memory

run() { # LABEL BINARY WRAPPER... : one upgrade (or status) of a fresh fleet by BINARY
    local label=$1 fleetup=$2
    shift 2
    bench_fresh_fleet "$HOSTS" "$WORK/up-$label.log"
    local args=(run -i "$FLEET/inventory.yml" "$ROOT/playbooks/simplelogin-upgrade.yml"
        -e sl_version=v4.66.1 --yes --output json --canary none --serial "$SERIAL")
    if [ "$WORKLOAD" = status ]; then args=(status -i "$FLEET/inventory.yml"); fi
    log "$label: $WORKLOAD, $HOSTS hosts, --serial $SERIAL --forks $FORKS"
    (cd "$WORK" && "$@" "$fleetup" "${args[@]}" --known-hosts "$FLEET/known_hosts" \
        --forks "$FORKS" >"$WORK/$label.jsonl" 2>"$WORK/$label.err")
}

# `fleetup status` has no batches: its hosts in flight are its forks.
IN_FLIGHT=$SERIAL
if [ "$WORKLOAD" = status ]; then IN_FLIGHT=$FORKS; fi
run heaptrack "$HEAP_FLEETUP" heaptrack -o "$WORK/heap"
heaptrack_print -f "$WORK/heap.zst" -F "$WORK/stacks.txt" --flamegraph-cost-type peak >/dev/null 2>&1
run time "$FLEETUP" /usr/bin/time -v -o "$WORK/time.txt"
python3 "$ROOT/tests/bench/memory.py" --stacks "$WORK/stacks.txt" --time "$WORK/time.txt" \
    --events "$WORK/time.jsonl" --hosts "$HOSTS" --serial "$IN_FLIGHT" --workload "$WORKLOAD"
