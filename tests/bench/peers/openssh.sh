#!/usr/bin/env bash
# The floor of tests/bench/peers.sh: the same commands as the upgrade (or the 14 trivial
# steps) through plain OpenSSH, one ControlMaster connection per host, every host at once
# (one backgrounded shell per host running its commands in sequence, no orchestrator).
#
# Usage: openssh.sh upgrade|trivial HOSTS.tsv KNOWN_HOSTS CONTROL_DIR [SL_VERSION RUN_ID]
#   HOSTS.tsv: name, address, port, user, key file, app path (tab-separated; written by
#   inventory_to_pyinfra.py --tsv from the fleet's inventory.yml)
# Exit 0 when every host succeeded; the hosts that failed are named on stderr.
set -uo pipefail

WORKLOAD=$1 HOSTS=$2 KH=$3 CTL=$4 SL_VERSION=${5:-} RUN_ID=${6:-openssh}
IMAGE=simplelogin/app-ci
mkdir -p "$CTL"

q() { printf '%q' "$1"; }

upgrade() { # ssh command prefix in "$@" is set by run_host; $APP
    local app; app=$(q "$APP")
    local target; target=$(q "$IMAGE:$SL_VERSION")
    # pre-flight
    R "docker info --format '{{.ServerVersion}}'" >/dev/null || return 1
    R "test -f $app/docker-compose.yml && test -f $app/.env" || return 1
    local free; free=$(R "df -Pm $app | awk 'NR == 2 { print \$4 }'") || return 1
    [ "${free:-0}" -ge 2048 ] || { echo "free disk: $free MB" >&2; return 1; }
    local current; current=$(R "v=\$(sed -n 's/^SL_VERSION=//p' $app/.env | tail -n 1)
[ -n \"\$v\" ] || v=\$(docker inspect --format '{{.Config.Image}}' sl-app 2>/dev/null | sed 's/.*://')
# /version answers from v4.65.2 on only; older versions answer 404.
[ -n \"\$v\" ] || v=\$(curl -fsS -m 5 http://127.0.0.1:7777/version 2>/dev/null)
echo \"\$v\"") || return 1
    [ -n "$current" ] || return 1
    local health; health=$(R "curl -fsS -m 5 http://127.0.0.1:7777/health")
    if [ "$current" = "$SL_VERSION" ] && [ "$health" = success ]; then
        return 0
    fi
    # lock
    R "d=$(q "$APP/.fleetup")
mkdir -p \"\$d\" && mkdir \"\$d/lock\" && printf '%s\\n' $(q "{\"run_id\":\"$RUN_ID\",\"tool\":\"openssh\"}") > \"\$d/lock/owner.json\"" || return 1
    local backup
    backup=$(R "set -eu
app=$app
dir=$(q "$APP/backups")
user=''
db=''
old=$(q "$current")
uri=\$(sed -n 's/^DB_URI=//p' \"\$app/simplelogin.env\" | tail -n 1)
[ -n \"\$user\" ] || user=\$(printf '%s' \"\$uri\" | sed -n 's|^[a-z0-9+]*://\\([^:@/]*\\).*|\\1|p')
[ -n \"\$db\" ] || db=\$(printf '%s' \"\$uri\" | sed -n 's|.*/\\([^/?]*\\).*\$|\\1|p')
mkdir -p \"\$dir\"
marker=\"\$dir/.upgrade-in-progress\"
if [ \"\$(sed -n 1p \"\$marker\" 2>/dev/null)\" = $(q "$RUN_ID") ] &&
   ! docker ps --format '{{.Names}}' | grep -qx sl-app &&
   [ -s \"\$(sed -n 2p \"\$marker\")\" ]; then
  sed -n 2p \"\$marker\"
  exit 0
fi
stamp=\$(date -u +%Y%m%dT%H%M%SZ)
base=\"\$dir/simplelogin-\$old-\$stamp\"
n=1
while [ -e \"\$base.sql\" ] || [ -e \"\$base.sql.gz\" ] || [ -e \"\$base.env\" ]; do
  n=\$((n + 1))
  base=\"\$dir/simplelogin-\$old-\$stamp-\$n\"
done
docker exec sl-db pg_dump --clean --if-exists -U \"\$user\" \"\$db\" > \"\$base.sql\"
[ -s \"\$base.sql\" ] || { echo 'the database dump is empty' >&2; rm -f \"\$base.sql\"; exit 1; }
gzip \"\$base.sql\"
cp \"\$app/.env\" \"\$base.env\"
cp \"\$app/simplelogin.env\" \"\$base.simplelogin.env\"
printf '%s\\n%s\\n' $(q "$RUN_ID") \"\$base.sql.gz\" > \"\$marker\"
echo \"\$base.sql.gz\"") || return 1
    R "docker pull $target" >/dev/null || return 1
    # point of no return: a failure from here rolls back
    local ok=1
    R "set -eu
present=\$(docker ps -a --format '{{.Names}}' | grep -xE 'sl-app|sl-email|sl-job-runner' | sort | tr '\\n' ' ')
[ -z \"\$present\" ] || { docker stop \$present && docker rm \$present; }" >/dev/null &&
    R "docker run --rm --name sl-migration -v $(q "$APP/sl:/sl") -v $(q "$APP/sl/upload:/code/static/upload") -v $(q "$APP/dkim.key:/dkim.key") -v $(q "$APP/dkim.pub.key:/dkim.pub.key") -v $(q "$APP/simplelogin.env:/code/.env") --network sl-network $target alembic upgrade head" >/dev/null &&
    R "docker run --rm --name sl-init -v $(q "$APP/sl:/sl") -v $(q "$APP/simplelogin.env:/code/.env") -v $(q "$APP/dkim.key:/dkim.key") -v $(q "$APP/dkim.pub.key:/dkim.pub.key") --network sl-network $target python init_app.py" >/dev/null &&
    R "set -eu
cd $app
{ grep -v '^SL_VERSION=' .env; echo SL_VERSION=$(q "$SL_VERSION"); } > .env.fleetup
mv .env.fleetup .env
docker compose up -d" >/dev/null &&
    R "deadline=\$(( \$(date +%s) + 120 ))
until [ \"\$(curl -fsS -m 5 http://127.0.0.1:7777/health 2>/dev/null)\" = success ]; do
  if [ \"\$(date +%s)\" -ge \"\$deadline\" ]; then
    echo '/health did not answer success within 120 s' >&2; exit 1
  fi
  sleep 2
done
image=\$(docker inspect --format '{{.Config.Image}}' sl-app)
[ \"\$image\" = $target ] || { echo \"sl-app runs \$image\" >&2; exit 1; }
rm -f $(q "$APP/backups/.upgrade-in-progress")
echo 'healthy at $SL_VERSION'" >/dev/null || ok=0
    if [ $ok = 0 ]; then
        R "docker rm -f sl-app sl-email sl-job-runner sl-migration sl-init 2>/dev/null; true"
        R "gzip -dc $(q "$backup") | docker exec -i sl-db psql -v ON_ERROR_STOP=1 -U myuser simplelogin" >/dev/null
        R "cd $app && { grep -v '^SL_VERSION=' .env; echo SL_VERSION=$(q "$current"); } > .env.fleetup && mv .env.fleetup .env && docker compose up -d"
    fi
    local outcome=ok
    [ $ok = 1 ] || outcome=failed
    R "d=$(q "$APP/.fleetup")
printf '%s\\n' \"\$(date -u +%Y-%m-%dT%H:%M:%SZ) run=$RUN_ID tool=openssh from=$current to=$SL_VERSION outcome=$outcome\" >> \"\$d/audit.log\"
rm -rf \"\$d/lock\"" || return 1
    [ $ok = 1 ]
}

trivial() {
    local i
    for i in $(seq 1 14); do
        R true || return 1
    done
}

run_host() { # name address port user key app
    local name=$1
    APP=$6
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
while IFS=$'\t' read -r name addr port user key app; do
    [ -n "$name" ] || continue
    run_host "$name" "$addr" "$port" "$user" "$key" "$app" &
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
