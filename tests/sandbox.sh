#!/usr/bin/env bash
# The sandbox: a real staged rollout on a local fleet of simulated SimpleLogin hosts.
#
# Starts 10 hosts behind real OpenSSH servers on 127.0.0.1, a mixed fleet as operators run
# it: hosts set up by SimpleLogin's README (`docker run`), by a compose file, and like
# springcomp/self-hosted-simplelogin; old versions in both tag forms; one host in the seed's
# broken state (at the target, schema behind: /health says success while the job runner
# restart-loops), which `fleetup status` flags and the run repairs. It upgrades staging,
# shows the promotion gate refusing production before staging has soaked, then (a day
# later, as FLEETUP_NOW rehearses it) upgrades production canary-first in batches, shows
# `fleetup status` and `fleetup history`, and stops the fleet.
# Nothing leaves this machine. Needs root (it creates the hosts' login user; it asks sudo
# when run by another user) and installs openssh-server when it is missing.
#
#   bash tests/sandbox.sh [TARGET_VERSION]        (default v4.66.1)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-v4.66.1}

if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "sandbox: run as root: it creates the login user of the simulated hosts" >&2; exit 1; }
  # sudo resets PATH: keep this user's, where cargo is.
  exec sudo --preserve-env=PATH,CARGO_HOME,RUSTUP_HOME bash "$0" "$@"
fi
if ! command -v cargo >/dev/null; then
  for c in "${CARGO_HOME:-$HOME/.cargo}/bin" /root/.cargo/bin; do
    [ -x "$c/cargo" ] && PATH="$c:$PATH" && break
  done
  command -v cargo >/dev/null || { echo "sandbox: cargo not found: install Rust (rustup) first" >&2; exit 1; }
fi
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null; then
  echo "sandbox: installing openssh-server (the simulated hosts run real sshd)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client >/dev/null
fi

echo "sandbox: building fleetup and the fleet simulator (release; a few minutes the first time on 2 cores)"
cargo build --release --bins
bin=target/release

dir=$(mktemp -d /tmp/fleetup-sandbox.XXXXXX)
chmod 755 "$dir"
cleanup() { "$bin/fleet-sim" down --dir "$dir/fleet" >/dev/null 2>&1 || true; }
trap cleanup EXIT

cat > "$dir/spec.yml" <<'EOF'
hosts:
  - {name: sl-staging-1, version: v4.64.2, groups: [staging], layout: readme}
  - {name: sl-staging-2, version: v4.65.0, groups: [staging], layout: springcomp}
  - {name: sl-prod-01, version: v4.65.0, groups: [production], canary: true, layout: readme}
  - {name: sl-prod-02, version: v4.64.2, groups: [production], layout: compose}
  - {name: sl-prod-03, version: v4.65.0, groups: [production], layout: readme, image: simplelogin/app, v_prefix: false}
  - {name: sl-prod-04, version: v4.66.1, groups: [production], layout: readme, broken: true}
  - {name: sl-prod-05, version: v4.64.2, groups: [production], layout: springcomp}
  - {name: sl-prod-06, version: v4.65.0, groups: [production], layout: compose}
  - {name: sl-prod-07, version: v4.65.2, groups: [production], layout: readme}
  - {name: sl-prod-08, version: v4.66.1, groups: [production], layout: compose}
EOF
# The simulated hosts are provisioned as their operators did (docker run, compose up): its
# chatter goes to a file, shown only if the fleet does not come up.
"$bin/fleet-sim" up --dir "$dir/fleet" --spec "$dir/spec.yml" --owner $$ 2>"$dir/fleet-up.log" ||
  { cat "$dir/fleet-up.log" >&2; exit 1; }
inventory="$dir/fleet/inventory.yml"
common=(-i "$inventory" --known-hosts "$dir/fleet/known_hosts" --yes)

status() {
  echo
  echo "== fleetup status, $1"
  local code=0
  "$bin/fleetup" status "${common[@]:0:4}" || code=$?
  [ "$code" = 0 ] || echo "(exit code $code: a host is down, broken or unreachable)"
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
