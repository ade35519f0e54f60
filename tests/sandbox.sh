#!/usr/bin/env bash
# The sandbox: a real staged rollout on a local fleet of simulated SimpleLogin hosts.
#
# Starts 10 hosts behind real OpenSSH servers on 127.0.0.1 (staging: 2, production: 8 with
# a canary; mixed old versions, one host already current), upgrades staging, shows the
# promotion gate refusing production before staging has soaked, then (a day later, as
# FLEETUP_NOW rehearses it) upgrades production canary-first in batches, shows
# `fleetup status` and `fleetup history`, and stops the fleet.
# Nothing leaves this machine. Needs root (it creates the hosts' login user) and installs
# openssh-server when it is missing.
#
#   bash tests/sandbox.sh [TARGET_VERSION]        (default v4.66.1)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-v4.66.1}

if [ "$(id -u)" != 0 ]; then
  echo "sandbox: run as root: it creates the login user of the simulated hosts" >&2
  exit 1
fi
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null; then
  echo "sandbox: installing openssh-server (the simulated hosts run real sshd)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null
fi

echo "sandbox: building fleetup and the fleet simulator (release)"
cargo build --release --quiet --bins
bin=target/release

dir=$(mktemp -d /tmp/fleetup-sandbox.XXXXXX)
chmod 755 "$dir"
cleanup() { "$bin/fleet-sim" down --dir "$dir/fleet" >/dev/null 2>&1 || true; }
trap cleanup EXIT

cat > "$dir/spec.yml" <<'EOF'
hosts:
  - {name: sl-staging-1, version: v4.64.2, groups: [staging]}
  - {name: sl-staging-2, version: v4.65.0, groups: [staging]}
  - {name: sl-prod-01, version: v4.65.0, groups: [production], canary: true}
  - {name: sl-prod-02, version: v4.64.2, groups: [production]}
  - {name: sl-prod-03, version: v4.65.0, groups: [production]}
  - {name: sl-prod-04, version: v4.66.1, groups: [production]}
  - {name: sl-prod-05, version: v4.64.2, groups: [production]}
  - {name: sl-prod-06, version: v4.65.0, groups: [production]}
  - {name: sl-prod-07, version: v4.65.2, groups: [production]}
  - {name: sl-prod-08, version: v4.65.0, groups: [production]}
EOF
"$bin/fleet-sim" up --dir "$dir/fleet" --spec "$dir/spec.yml" --owner $$
inventory="$dir/fleet/inventory.yml"
common=(-i "$inventory" --known-hosts "$dir/fleet/known_hosts" --yes)

status() {
  echo
  echo "== fleetup status, $1"
  "$bin/fleetup" status "${common[@]:0:4}" || true
}

status "before"
echo
echo "== upgrading staging to $target"
"$bin/fleetup" run "${common[@]}" playbooks/simplelogin-upgrade.yml \
  -e "sl_version=$target" --limit staging
echo
echo "== production right after: the promotion gate wants staging to soak for 24h first"
code=0
"$bin/fleetup" run "${common[@]}" playbooks/simplelogin-upgrade.yml \
  -e "sl_version=$target" --limit production --require-staged staging || code=$?
echo "(exit code $code: refused, nothing changed)"
echo
echo "== a day later (FLEETUP_NOW rehearses it): the gate checks staging live and lets"
echo "   production through: canary first, then batches of 1, 5, 25%"
FLEETUP_NOW=$(date -u -d '+25 hours' +%Y-%m-%dT%H:%M:%SZ) \
  "$bin/fleetup" run "${common[@]}" playbooks/simplelogin-upgrade.yml \
  -e "sl_version=$target" --limit production --require-staged staging
status "after"
echo
echo "== fleetup history: what the journal recorded"
"$bin/fleetup" history -i "$inventory"
echo
echo "sandbox: done; the run journals are in $dir/fleet/.fleetup/runs"
