#!/usr/bin/env bash
# Peer benchmark (issue 8): fleetup against tuned Ansible, pyinfra and plain OpenSSH on the
# same simulated fleet (tests/fleet), for two workloads:
#   upgrade  playbooks/simplelogin-upgrade.yml -e sl_version=v4.66.1, every host from
#            v4.65.0 (peers/upgrade.ansible.yml, peers/upgrade_pyinfra.py, peers/openssh.sh
#            run the playbook's own commands, rendered by peers/fleetup_playbook.py: the
#            pre-flight's 4 and the 11 steps, the host lock in the first step's command and
#            the release in the last's, 15 per host)
#   trivial  14 steps of `true` per host: the orchestrators' own cost
# at each size of --sizes, all tools in one batch at the same parallelism (--forks; the
# OpenSSH floor runs every host at once), a fresh fleet for every run, --runs runs each
# (tools interleaved). Each run is checked on the hosts (upgraded and healthy, or 14
# commands each): a run that is not is a failed measurement, not a figure. Then a scale run
# of fleetup alone: 1000 hosts, --serial 200 --forks 200, the upgrade, then `fleetup status`
# of 1000 hosts at --forks 200.
# Prints the median wall time, controller CPU (user + sys of the whole process tree), the
# fleet's CPU, peak memory (whole tree, cgroup), commands and logins per host (from the
# hosts' own logs) per tool, the ratios, a Markdown table for the README, the machine, and
# PASS/MISS per target of issues 8 and 19. See tests/bench/peers/README.md.
#
# Usage: tests/bench/peers.sh [--runs N] [--sizes "20 100"] [--forks F] [--skip-scale]
#          [--scale-hosts N] [--workloads "upgrade trivial"]
#          [--tools "fleetup ansible pyinfra openssh"] [--ansible-strategy linear|free] [--keep]
#          [--fleetup DIR]
#   --runs N            runs per tool, workload and size (default 3; the median is shown)
#   --sizes "..."       fleet sizes (default "20 100")
#   --forks F           parallelism of every tool (default 20)
#   --skip-scale        no 1000-host run
#   --scale-hosts N     hosts of the scale run (default 1000)
#   --workloads "..."   default "upgrade trivial"
#   --tools "..."       default "fleetup ansible pyinfra openssh"
#   --ansible-strategy  default linear (measured faster here than free: see the README)
#   --keep              keep the work directory (every run's output, the fleets' logs)
#   --fleetup DIR       measure the fleetup of another checkout (its release build and its
#                       playbooks; built if missing), e.g. an older commit for a before/after
# Needs root (the fleet runs sshd and creates its login user). Installs ansible-core and
# pyinfra from PyPI into a virtualenv under ${FLEETUP_BENCH_CACHE:-~/.cache/fleetup-bench}.
# Exit 0 when every target passes, 1 when one is missed, 2 on a setup error.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BENCH="$ROOT/tests/bench"
PEERS="$BENCH/peers"
RUNS=3
SIZES="20 100"
FORKS=20
SERIAL=100%
SCALE=1
SCALE_HOSTS=1000
WORKLOADS="upgrade trivial"
TOOLS="fleetup ansible pyinfra openssh"
STRATEGY=linear
KEEP=0
FLEETUP_ROOT=
VERSION_FROM=v4.65.0
VERSION_TO=v4.66.1
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --sizes) SIZES=$2; shift 2 ;;
        --forks) FORKS=$2; shift 2 ;;
        --skip-scale) SCALE=0; shift ;;
        --scale-hosts) SCALE_HOSTS=$2; shift 2 ;;
        --workloads) WORKLOADS=$2; shift 2 ;;
        --tools) TOOLS=$2; shift 2 ;;
        --ansible-strategy) STRATEGY=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --fleetup) FLEETUP_ROOT=$(cd "$2" && pwd); shift 2 ;;
        -h|--help) sed -n '2,37p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
has_tool() { case " $TOOLS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

log() { printf '[peers %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# --- what the benchmark needs --------------------------------------------------------
if [ "$(id -u)" != 0 ]; then
    echo "the test fleet needs root (it runs sshd and creates its login user)" >&2
    exit 2
fi
need_apt=()
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh >/dev/null || need_apt+=(openssh-client)
[ -x /usr/bin/python3 ] || need_apt+=(python3)
/usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
mkdir -p /run/sshd
# 200 connections at once, and a fleet of 63 sshd's: more descriptors than some defaults.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

CACHE=${FLEETUP_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fleetup-bench}
VENV="$CACHE/venv"
if has_tool ansible || has_tool pyinfra || has_tool openssh; then
    if [ ! -x "$VENV/bin/ansible-playbook" ] || [ ! -x "$VENV/bin/pyinfra" ]; then
        log "installing ansible-core and pyinfra from PyPI into $VENV"
        mkdir -p "$CACHE"
        /usr/bin/python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check 'ansible-core>=2.16' 'pyinfra>=3,<4'
    fi
fi
PY="$VENV/bin/python"
[ -x "$PY" ] || PY=/usr/bin/python3

log "cargo build --release --bins"
(cd "$ROOT" && cargo build --release --bins --quiet)
FLEETUP_ROOT=${FLEETUP_ROOT:-$ROOT}
if [ ! -x "$FLEETUP_ROOT/target/release/fleetup" ]; then
    log "cargo build --release --bins in $FLEETUP_ROOT"
    (cd "$FLEETUP_ROOT" && cargo build --release --bins --quiet)
fi
FLEETUP="$FLEETUP_ROOT/target/release/fleetup"
SIM="$ROOT/target/release/fleet-sim"

WORK=$(mktemp -d /tmp/fleetup-peers.XXXXXX)
chmod 755 "$WORK" # the fleet's login user must reach the fleet dir
FLEET="$WORK/fleet"
cleanup() {
    local rc=$?
    "$SIM" down --dir "$FLEET" >/dev/null 2>&1 || true
    if [ "$KEEP" = 1 ]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- a fresh fleet: every host at $VERSION_FROM, nothing run on it yet ------------------
fresh_fleet() { # N
    local n=$1
    "$SIM" down --dir "$FLEET" >/dev/null 2>&1 || true
    rm -rf "$FLEET"
    mkdir -p "$FLEET"
    if [ ! -f "$WORK/spec-$n.yml" ]; then
        {
            echo "hosts:"
            for i in $(seq -w 1 "$n"); do
                echo "  - {name: sl-$i, groups: [production], version: $VERSION_FROM}"
            done
        } >"$WORK/spec-$n.yml"
    fi
    "$SIM" up --dir "$FLEET" --spec "$WORK/spec-$n.yml" --owner $$ >"$WORK/fleet-up.log" 2>&1 || {
        cat "$WORK/fleet-up.log" >&2
        echo "fleet-sim up failed for $n hosts" >&2
        exit 2
    }
}

# --- the command of each tool -------------------------------------------------------------
tool_cmd() { # TOOL WORKLOAD RUNID -> sets CMD (array) and env
    local tool=$1 wl=$2 id=$3 inv="$FLEET/inventory.yml" kh="$FLEET/known_hosts"
    case "$tool" in
        fleetup)
            local pb="$FLEETUP_ROOT/playbooks/simplelogin-upgrade.yml"
            [ "$wl" = trivial ] && pb="$PEERS/trivial.fleetup.yml"
            # One batch of every host (no canary), FORKS at once, like the peers.
            CMD=("$FLEETUP" run -i "$inv" "$pb" --known-hosts "$kh" --yes --output json
                --canary none --serial "$SERIAL" --forks "$FORKS")
            if [ "$wl" = upgrade ]; then CMD+=(-e "sl_version=$VERSION_TO"); fi
            # `fleetup status`: the built-in status playbook, read-only, FORKS at once.
            if [ "$wl" = status ]; then
                CMD=("$FLEETUP" status -i "$inv" --known-hosts "$kh" --forks "$FORKS")
            fi
            ;;
        ansible)
            local pb="$PEERS/upgrade.ansible.yml"
            [ "$wl" = trivial ] && pb="$PEERS/trivial.ansible.yml"
            export ANSIBLE_CONFIG="$PEERS/ansible.cfg"
            export ANSIBLE_SSH_COMMON_ARGS="-o UserKnownHostsFile=$kh"
            export ANSIBLE_SSH_CONTROL_PATH_DIR="$WORK/cp-$id"
            export ANSIBLE_STRATEGY="$STRATEGY"
            export ANSIBLE_LOCAL_TEMP="$WORK/ansible-tmp-$id"
            export ANSIBLE_HOME="$WORK/ansible-home"
            CMD=("$VENV/bin/ansible-playbook" -i "$inv" "$pb" -f "$FORKS")
            if [ "$wl" = upgrade ]; then CMD+=(-e "sl_version=$VERSION_TO" -e "bench_run_id=$id"); fi
            ;;
        pyinfra)
            "$PY" "$PEERS/inventory_to_pyinfra.py" "$inv" "$kh" "$WORK/inventory-$id.py"
            local deploy="$PEERS/upgrade_pyinfra.py"
            [ "$wl" = trivial ] && deploy="$PEERS/trivial_pyinfra.py"
            # The upgrade imports fleetup_playbook.py from peers/.
            export PYTHONPATH="$PEERS"
            CMD=("$VENV/bin/pyinfra" "$WORK/inventory-$id.py" "$deploy" -y --parallel "$FORKS")
            if [ "$wl" = upgrade ]; then CMD+=(--data "sl_version=$VERSION_TO" --data "bench_run_id=$id"); fi
            ;;
        openssh)
            "$PY" "$PEERS/inventory_to_pyinfra.py" --tsv "$inv" "$WORK/hosts-$id.tsv"
            # Its per-host renderer needs jinja2 and PyYAML: the virtualenv's python.
            export PEERS_PYTHON="$PY"
            CMD=(bash "$PEERS/openssh.sh" "$wl" "$WORK/hosts-$id.tsv" "$kh" "$WORK/ctl-$id"
                "$VERSION_TO" "$id")
            ;;
    esac
    return 0
}

RESULTS=()
measure() { # TOOL WORKLOAD N R -> sets LAST to the run's JSON
    local tool=$1 wl=$2 n=$3 r=$4
    local id="$tool-$wl-$n-$r"
    local out="$WORK/run-$id"
    fresh_fleet "$n"
    local fleet_cpu
    fleet_cpu=$(/usr/bin/python3 "$PEERS/analyse.py" fleet-cpu --fleet "$FLEET")
    (
        tool_cmd "$tool" "$wl" "$id"
        cd "$WORK"
        /usr/bin/python3 "$PEERS/measure.py" --out "$out.json" -- "${CMD[@]}" >"$out.stdout" 2>"$out.stderr"
    ) || true
    sleep 0.3 # the session wrapper logs a command's end after its channel closed
    local forks=$FORKS
    [ "$tool" = openssh ] && forks=$n
    /usr/bin/python3 "$PEERS/analyse.py" verify --fleet "$FLEET" --workload "$wl" \
        --version "$VERSION_TO" --sim "$SIM" --run "$out.json" --tool "$tool" \
        --forks "$forks" --run-index "$r" --fleet-cpu-before "$fleet_cpu" >"$out.verify" || true
    log "$(cat "$out.verify")"
    if ! grep -q ': ok;' "$out.verify"; then
        tail -c 1500 "$out.stderr" >&2 || true
        tail -c 1500 "$out.stdout" >&2 || true
    fi
    LAST="$out.json"
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
log "machine: $(nproc) cores, load $LOAD0; work dir $WORK"
VERSIONS="fleetup $(git -C "$FLEETUP_ROOT" rev-parse --short HEAD 2>/dev/null || cat "$FLEETUP_ROOT/REV" 2>/dev/null || echo '?')"
[ -x "$VENV/bin/ansible-playbook" ] && VERSIONS="$VERSIONS, ansible-core $("$VENV/bin/python" -c 'import ansible.release as r; print(r.__version__)')"
[ -x "$VENV/bin/pyinfra" ] && VERSIONS="$VERSIONS, pyinfra $("$VENV/bin/python" -c 'import pyinfra.version as v; print(v.__version__)' 2>/dev/null || "$VENV/bin/pyinfra" --version | awk '{print $NF}')"
VERSIONS="$VERSIONS, $(ssh -V 2>&1 | cut -d, -f1)"
log "$VERSIONS"

for wl in $WORKLOADS; do
    for n in $SIZES; do
        for r in $(seq 1 "$RUNS"); do
            for tool in $TOOLS; do
                measure "$tool" "$wl" "$n" "$r"
                RESULTS+=("$LAST")
            done
        done
    done
done

SCALE_JSON=()
if [ "$SCALE" = 1 ] && has_tool fleetup; then
    log "scale run: fleetup, $SCALE_HOSTS hosts, --serial 200 --forks 200, the upgrade"
    FORKS_SAVED=$FORKS
    FORKS=200 SERIAL=200
    measure fleetup upgrade "$SCALE_HOSTS" 1
    FORKS=$FORKS_SAVED SERIAL=100%
    /usr/bin/python3 - "$LAST" <<'EOF'
import json, sys
p = sys.argv[1]
r = json.load(open(p)); r["serial"] = 200; json.dump(r, open(p, "w"))
EOF
    SCALE_JSON=(--scale "$LAST")
    log "scale run: fleetup status, $SCALE_HOSTS hosts, --forks 200"
    FORKS=200
    measure fleetup status "$SCALE_HOSTS" 1
    FORKS=$FORKS_SAVED
    SCALE_JSON+=(--scale "$LAST")
fi

LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
echo
echo "fleetup against its peers, $(date -u +%Y-%m-%dT%H:%MZ), $RUNS runs per case (median), forks $FORKS"
echo
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/^Mem:/ {print $2}') GB," \
    "kernel $(uname -r), $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"); load average $LOAD0 at the start, $LOAD1 at the end."
echo "Tools: $VERSIONS; Ansible strategy $STRATEGY, pipelining, ControlPersist, no facts."
echo
rc=0
/usr/bin/python3 "$PEERS/analyse.py" report "${SCALE_JSON[@]}" "${RESULTS[@]}" || rc=$?
exit $rc
