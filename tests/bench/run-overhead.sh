#!/usr/bin/env bash
# Benchmark of `fleetup run`'s own cost: starts the test fleet (tests/fleet) and runs a
# 14-step playbook of trivial commands over it, for
#   N=20 hosts at forks 50, N=200 at forks 50, and N=200 in one batch at forks 200,
# a few times each, under GNU time. Reports per case (median of the runs) the wall time,
# the controller's CPU time and peak memory, the overhead per host-step and the SSH logins
# per host, then PASS/MISS per target of the engine issue. See tests/bench/README.md.
#
# Usage: tests/bench/run-overhead.sh [--runs N] [--cases "HOSTS:FORKS:SERIAL ..."] [--keep]
#   --runs N     runs per case (default 3; the median is reported)
#   --cases ...  default "20:50:all 200:50:all 200:200:200" (SERIAL `all`: no --serial)
#   --keep       keep the work directory (fleets' logs, events, time outputs)
# Needs root (the fleet runs sshd and creates its login user). Exit 0 when every target
# passes, 1 when one is missed, 2 on a setup error.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH="$ROOT/tests/bench"
RUNS=3
CASES="20:50:all 200:50:all 200:200:200"
STEPS=14
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --cases) CASES=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# --- what the benchmark needs --------------------------------------------------------
need_apt=()
[ -x /usr/bin/time ] || need_apt+=(time)
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh-keygen >/dev/null || need_apt+=(openssh-client)
[ -x /usr/bin/python3 ] || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
mkdir -p /run/sshd
if [ "$(id -u)" != 0 ]; then
    echo "the test fleet needs root (it runs sshd and creates its login user)" >&2
    exit 2
fi

log "cargo build --release --bins"
(cd "$ROOT" && cargo build --release --bins --quiet)
FLEETUP="$ROOT/target/release/fleetup"
SIM="$ROOT/target/release/fleet-sim"

WORK=$(mktemp -d /tmp/fleetup-bench.XXXXXX)
chmod 755 "$WORK" # the fleet's login user must reach the fleet dir
FLEETS=()
cleanup() {
    local rc=$?
    for f in "${FLEETS[@]}"; do
        "$SIM" down --dir "$f" >/dev/null 2>&1 || true
    done
    if [ "$KEEP" = 1 ]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the playbook: 14 trivial steps, alternately `true` and an `echo` -----------------
PB="$WORK/playbook.yml"
{
    echo "name: benchmark, $STEPS trivial steps"
    echo "hosts: all"
    echo "steps:"
    for i in $(seq 1 "$STEPS"); do
        printf '  - name: step %02d\n' "$i"
        if [ $((i % 2)) = 1 ]; then
            echo "    shell: \"true\""
        else
            echo "    shell: echo step $i"
        fi
    done
} >"$PB"

# --- one fleet per host count -----------------------------------------------------------
start_fleet() { # N -> prints the fleet dir
    local n=$1 dir="$WORK/fleet-$1"
    mkdir -p "$dir"
    {
        echo "hosts:"
        for i in $(seq -w 1 "$n"); do
            echo "  - {name: bench-$i, groups: [bench], version: v4.65.0}"
        done
    } >"$WORK/spec-$n.yml"
    FLEETS+=("$dir")
    "$SIM" up --dir "$dir" --spec "$WORK/spec-$n.yml" --owner $$ >"$WORK/fleet-$n.up.log" 2>&1 || {
        cat "$WORK/fleet-$n.up.log" >&2
        echo "fleet-sim up failed for $n hosts" >&2
        exit 2
    }
}

RESULTS=()
run_case() { # HOSTS FORKS SERIAL RUN
    local n=$1 forks=$2 serial=$3 r=$4
    local dir="$WORK/fleet-$n" case="N=$n forks=$forks"
    [ "$serial" != all ] && case="$case serial=$serial"
    local out="$WORK/run-$n-$forks-$serial-$r"
    local args=(run -i "$dir/inventory.yml" "$PB" --known-hosts "$dir/known_hosts" --yes
        --output json --forks "$forks" --canary none)
    [ "$serial" != all ] && args+=(--serial "$serial")
    /usr/bin/python3 "$BENCH/analyse.py" mark "$dir" "$out.mark.json"
    head -1 /proc/stat >"$out.stat0"
    local t0 t1 rc=0
    t0=$(date +%s.%N)
    /usr/bin/time -v -o "$out.time" "$FLEETUP" "${args[@]}" >"$out.events" 2>"$out.stderr" || rc=$?
    t1=$(date +%s.%N)
    head -1 /proc/stat >"$out.stat1"
    # The session wrapper logs a command's end after its channel closed: let it land.
    sleep 0.3
    /usr/bin/python3 "$BENCH/analyse.py" measure --fleet "$dir" --mark "$out.mark.json" \
        --events "$out.events" --time "$out.time" --stat0 "$out.stat0" --stat1 "$out.stat1" \
        --t0 "$t0" --t1 "$t1" --case "$case" --hosts "$n" --forks "$forks" --serial "$serial" \
        --steps "$STEPS" >"$out.json"
    RESULTS+=("$out.json")
    log "$case run $r: exit $rc, $(/usr/bin/python3 "$BENCH/analyse.py" brief "$out.json")"
    if [ "$rc" != 0 ]; then
        head -c 2000 "$out.stderr" >&2
    fi
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
log "machine: $(nproc) cores, load $LOAD0; work dir $WORK"
started=""
for c in $CASES; do
    IFS=: read -r n forks serial <<<"$c"
    case " $started " in
        *" $n "*) ;;
        *)
            log "starting a fleet of $n hosts"
            start_fleet "$n"
            started="$started $n"
            ;;
    esac
    for r in $(seq 1 "$RUNS"); do
        run_case "$n" "$forks" "$serial" "$r"
    done
done

echo
echo "fleetup run benchmark, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $STEPS steps, $RUNS runs per case (median), load average $LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end"
echo
rc=0
/usr/bin/python3 "$BENCH/analyse.py" report "${RESULTS[@]}" || rc=$?
exit $rc
