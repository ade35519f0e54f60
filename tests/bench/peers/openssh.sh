#!/usr/bin/env bash
# The floor of tests/bench/peers.sh: the upgrade (or the 14 trivial steps) through plain
# OpenSSH, one ControlMaster connection per host, every host at once, no orchestrator.
# - upgrade: per host one `openssh_host.py` process (fleetup_playbook.py renders each
#   command of the shipped playbook from what the earlier ones printed) running each
#   command with `ssh` over the host's ControlMaster connection: 15 commands per host;
# - trivial: per host one backgrounded shell running `ssh HOST true` 14 times.
#
# Usage: openssh.sh upgrade|trivial HOSTS.tsv KNOWN_HOSTS CONTROL_DIR [SL_VERSION RUN_ID]
#   HOSTS.tsv: name, address, port, user, key file, the host's variables as JSON
#   (tab-separated; written by inventory_to_pyinfra.py --tsv from the fleet's inventory.yml)
#   PEERS_PYTHON: a python3 with jinja2 and PyYAML (default python3)
# Exit 0 when every host succeeded; the hosts that failed are named on stderr.
set -uo pipefail

WORKLOAD=$1 HOSTS=$2 KH=$3 CTL=$4 SL_VERSION=${5:-} RUN_ID=${6:-openssh}
PEERS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$CTL"

trivial() {
    local i
    for i in $(seq 1 14); do
        R true || return 1
    done
}

run_host() { # name address port user key vars
    local name=$1
    if [ "$WORKLOAD" = upgrade ]; then
        PYTHONPATH="$PEERS" "${PEERS_PYTHON:-python3}" "$PEERS/openssh_host.py" "$CTL" "$KH" \
            "$SL_VERSION" "$RUN_ID" "$@" >"$CTL/$name.out" 2>"$CTL/$name.err"
        return
    fi
    SSH=(ssh -n -o ControlMaster=auto -o "ControlPath=$CTL/$name" -o ControlPersist=60
        -o "UserKnownHostsFile=$KH" -o StrictHostKeyChecking=yes -o BatchMode=yes
        -o PreferredAuthentications=publickey -o IdentitiesOnly=yes -i "$5" -p "$3")
    DEST="$4@$2"
    R() { "${SSH[@]}" "$DEST" "$1"; }
    local rc=0
    "$WORKLOAD" >"$CTL/$name.out" 2>"$CTL/$name.err" || rc=$?
    "${SSH[@]}" -O exit "$DEST" 2>/dev/null || true
    return $rc
}

pids=() names=()
while IFS=$'\t' read -r name addr port user key vars; do
    [ -n "$name" ] || continue
    run_host "$name" "$addr" "$port" "$user" "$key" "$vars" &
    pids+=($!) names+=("$name")
done <"$HOSTS"
failed=0
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
        echo "${names[$i]}: failed ($(tail -c 300 "$CTL/${names[$i]}.err"))" >&2
        failed=$((failed + 1))
    fi
done
echo "openssh $WORKLOAD: ${#pids[@]} hosts, $failed failed"
[ $failed = 0 ]
