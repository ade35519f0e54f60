#!/usr/bin/env bash
# The controller's own CPU on the shipped upgrade, or on trivial steps (issue 19: <= 0.25 ms per host-step).
# Starts a fresh test fleet (tests/fleet) of N hosts at v4.65.0 for each run, upgrades it
# with playbooks/simplelogin-upgrade.yml -e sl_version=v4.66.1 (one batch, no canary),
# under GNU time, and prints per run and as the median: the controller's CPU (user + sys),
# the commands the hosts ran (their own commands.log), CPU per host-step (= per command a
# host ran), wall time and peak memory. Every run is checked: each host upgraded (exit 0,
# every host_finished ok).
#
# Usage: tests/bench/cpu.sh [--hosts N] [--forks F] [--runs R] [--workload W] [--fleetup PATH]
#                           [--perf] [--keep]
#   --hosts N       hosts in the fleet (default 20; keep it <= 50 on a shared machine)
#   --forks F       hosts at once (default: all of them, as peers.sh runs the peers)
#   --runs R        runs (default 3; the median is printed)
#   --workload W    upgrade (default); trivial: peers.sh's 14 steps of `true` per host; or
#                   paced: the same 14 steps, each `sleep 0.25`, so that at forks 20 the
#                   hosts' messages come as far apart as the upgrade's, with no template,
#                   validation or output to handle: what the waking per message costs alone
#   --fleetup PATH  the fleetup binary to measure (default: this checkout's release build)
#   --perf          also record each run with `perf record` and print where the CPU went,
#                   by function and by part (cpu_split.py; a --fleetup built with frame
#                   pointers gives whole call stacks)
#   --keep          keep the work directory
# Needs root (the fleet runs sshd). Exit 0 when the runs are good, 1 when one is not.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HOSTS=20
FORKS=""
RUNS=3
WORKLOAD=upgrade
FLEETUP=""
PERF=0
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --hosts) HOSTS=$2; shift 2 ;;
        --forks) FORKS=$2; shift 2 ;;
        --runs) RUNS=$2; shift 2 ;;
        --workload) WORKLOAD=$2; shift 2 ;;
        --fleetup) FLEETUP=$2; shift 2 ;;
        --perf) PERF=1; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
log() { printf '[cpu %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

[ "$(id -u)" = 0 ] || { echo "the test fleet needs root" >&2; exit 2; }
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
if [ "$PERF" = 1 ] && ! command -v perf >/dev/null; then
    echo "--perf needs perf (linux-perf)" >&2
    exit 2
fi
case "$WORKLOAD" in
    upgrade) PLAYBOOK=("$ROOT/playbooks/simplelogin-upgrade.yml" -e sl_version=v4.66.1) ;;
    trivial | paced) PLAYBOOK=("$ROOT/tests/bench/peers/trivial.fleetup.yml") ;;
    *) echo "--workload is upgrade, trivial or paced, not $WORKLOAD" >&2; exit 2 ;;
esac
(cd "$ROOT" && cargo build --release --bins --quiet)
FLEETUP=${FLEETUP:-$ROOT/target/release/fleetup}
SIM="$ROOT/target/release/fleet-sim"

# shellcheck source=tests/bench/fleet.sh
. "$ROOT/tests/bench/fleet.sh"
bench_work cpu
if [ "$WORKLOAD" = paced ]; then
    sed 's/shell: "true"/shell: "sleep 0.25"/' "${PLAYBOOK[0]}" >"$WORK/paced.yml"
    PLAYBOOK=("$WORK/paced.yml")
fi

# One run: prints "cpu_s commands wall_s rss_mb good".
run_once() { # R
    local r=$1 out="$WORK/run-$1"
    bench_fresh_fleet "$HOSTS" "$out.up"
    local cmd=("$FLEETUP" run -i "$FLEET/inventory.yml" "${PLAYBOOK[@]}"
        --known-hosts "$FLEET/known_hosts" --yes --output json --canary none
        --serial "$HOSTS" --forks "${FORKS:-$HOSTS}")
    local rc=0
    if [ "$PERF" = 1 ]; then
        perf record -q -F 999 -g -o "$out.perf" -- /usr/bin/time -v -o "$out.time" \
            "${cmd[@]}" >"$out.events" 2>"$out.stderr" || rc=$?
    else
        /usr/bin/time -v -o "$out.time" "${cmd[@]}" >"$out.events" 2>"$out.stderr" || rc=$?
    fi
    sleep 0.3 # the session wrapper logs a command's end after its channel closed
    python3 - "$out" "$FLEET" "$HOSTS" "$rc" <<'EOF'
import glob, json, re, sys
out, fleet, hosts, rc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
t = open(out + ".time").read()
num = lambda label: float(re.search(label + r": ([0-9.]+)", t).group(1))
cpu = num("User time \\(seconds\\)") + num("System time \\(seconds\\)")
rss = num("Maximum resident set size \\(kbytes\\)") / 1024
m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([0-9.]+)", t)
wall = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
commands = 0
for log in glob.glob(f"{fleet}/hosts/*/commands.log"):
    for line in open(log):
        e = json.loads(line)
        commands += e.get("ev") == "start" and e.get("kind") == "session"
ok = sum(1 for line in open(out + ".events")
         if '"event":"host_finished"' in line and json.loads(line).get("outcome") == "ok")
print(f"{cpu:.3f} {commands} {wall:.2f} {rss:.1f} {int(rc == 0 and ok == hosts)}")
EOF
}

log "$HOSTS hosts, forks ${FORKS:-$HOSTS}, $RUNS runs, $FLEETUP; load $(cut -d' ' -f1-3 /proc/loadavg)"
results=()
for r in $(seq 1 "$RUNS"); do
    line=$(run_once "$r")
    results+=("$line")
    read -r cpu cmds wall rss good <<<"$line"
    log "run $r: cpu ${cpu} s, ${cmds} commands, wall ${wall} s, ${rss} MB, good=${good}"
    if [ "$PERF" = 1 ]; then
        perf report -i "$WORK/run-$r.perf" --children --sort symbol --stdio -g none \
            --percent-limit 4 2>/dev/null | grep -E '^ +[0-9]' | grep 'fleetup::' |
            grep -v '{{closure}}' | cut -c1-140 | head -25 >&2 || true
        perf script -i "$WORK/run-$r.perf" 2>/dev/null | "$ROOT/tests/bench/cpu_split.py" >&2 || true
    fi
done

echo
echo "controller CPU on the $WORKLOAD, $HOSTS hosts, one batch, forks ${FORKS:-$HOSTS}, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at the end"
printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
runs = [l.split() for l in sys.stdin if l.strip()]
print("run | cpu s | commands | cpu/host-step ms | wall s | rss MB | good")
for i, (cpu, cmds, wall, rss, good) in enumerate(runs, 1):
    print(f"{i} | {cpu} | {cmds} | {1000 * float(cpu) / int(cmds):.3f} | {wall} | {rss} | {good}")
med = statistics.median(1000 * float(r[0]) / int(r[1]) for r in runs)
print(f"median controller CPU per host-step: {med:.3f} ms (target 0.25)")
sys.exit(0 if all(r[4] == "1" for r in runs) else 1)
'
