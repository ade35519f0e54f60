# The pyinfra equivalent of playbooks/simplelogin-upgrade.yml, for tests/bench/peers.sh:
# the same shell commands, in the same order, the same skip condition (a host already at
# sl_version and healthy), the same rollback after the point of no return, and the same
# host lock and audit line.
#
#   pyinfra INVENTORY.py tests/bench/peers/upgrade_pyinfra.py -y --parallel 20 \
#     --data sl_version=v4.66.1 --data bench_run_id=ID
#
# pyinfra builds every host's operations first and runs them afterwards, so commands that
# need an earlier command's output (the old version in the backup name and the audit
# line) are built at run time in a python.call that runs them on the host's connection;
# the others are server.shell operations guarded by `_if`. Every command is one exec on
# the host's one SSH connection (paramiko). The pre-flight (read-only) runs on every host
# before any host changes (operations run one after the other across hosts).
import shlex

from pyinfra import host
from pyinfra.operations import python, server


def q(s):
    return shlex.quote(str(s))


def var(name, default):
    v = host.data.get(name)
    return default if v in (None, "") else v


sl_version = var("sl_version", None)
if not sl_version:
    raise SystemExit("sl_version is required (--data sl_version=...)")
run_id = var("bench_run_id", "pyinfra")
app = var("sl_app_path", "/opt/simplelogin")
image = var("sl_image", "simplelogin/app-ci")
compose = var("sl_compose", "docker compose")
db_user = var("sl_db_user", "")
db_name = var("sl_db_name", "")
health_timeout = int(var("sl_health_timeout", 120))
backup_dir = var("sl_backup_dir", f"{app}/backups")
min_free_mb = int(var("sl_min_free_mb", 2048))
target = f"{image}:{sl_version}"

# --- pre-flight ------------------------------------------------------------------------
server.shell(name="docker answers", commands=["docker info --format '{{.ServerVersion}}'"])
server.shell(
    name="app path and compose file present",
    commands=[f"test -f {q(app)}/docker-compose.yml && test -f {q(app)}/.env"],
)
# fleetup and Ansible compare the output on the controller; here the shell does it.
server.shell(
    name="free disk",
    commands=[
        f"free=$(df -Pm {q(app)} | awk 'NR == 2 {{ print $4 }}') && echo \"$free\""
        f" && [ \"$free\" -ge {min_free_mb} ]"
    ],
)
current = server.shell(
    name="current version",
    commands=[
        f"""v=$(sed -n 's/^SL_VERSION=//p' {q(app)}/.env | tail -n 1)
[ -n "$v" ] || v=$(docker inspect --format '{{{{.Config.Image}}}}' sl-app 2>/dev/null | sed 's/.*://')
# /version answers from v4.65.2 on only; older versions answer 404.
[ -n "$v" ] || v=$(curl -fsS -m 5 http://127.0.0.1:7777/version 2>/dev/null)
echo "$v"
[ -n "$v" ]"""
    ],
)
# `|| true`: failed_when: false (its output decides, not its exit code)
health = server.shell(
    name="health now", commands=["curl -fsS -m 5 http://127.0.0.1:7777/health || true"]
)


def need():
    return current.stdout.strip() != sl_version or health.stdout.strip() != "success"


def run(cmd):
    """Run a command built at run time; fail the host on a non-zero exit."""
    ok, out = host.run_shell_command(command=cmd)
    if not ok:
        raise RuntimeError(f"{cmd.splitlines()[0]} ...: {out.stderr}")
    return out.stdout


# --- lock -----------------------------------------------------------------------------
owner = '{"run_id":"%s","tool":"pyinfra"}' % run_id
server.shell(
    name="take the host lock",
    commands=[
        f"d={q(app + '/.fleetup')}\n"
        f'mkdir -p "$d" && mkdir "$d/lock" && printf \'%s\\n\' {q(owner)} > "$d/lock/owner.json"'
    ],
    _if=need,
)

# --- the upgrade ------------------------------------------------------------------------
backup_out = {}


def back_up():
    backup_out["path"] = run(f"""set -eu
app={q(app)}
dir={q(backup_dir)}
user={q(db_user)}
db={q(db_name)}
old={q(current.stdout.strip())}
uri=$(sed -n 's/^DB_URI=//p' "$app/simplelogin.env" | tail -n 1)
[ -n "$user" ] || user=$(printf '%s' "$uri" | sed -n 's|^[a-z0-9+]*://\\([^:@/]*\\).*|\\1|p')
[ -n "$db" ] || db=$(printf '%s' "$uri" | sed -n 's|.*/\\([^/?]*\\).*$|\\1|p')
mkdir -p "$dir"
marker="$dir/.upgrade-in-progress"
if [ "$(sed -n 1p "$marker" 2>/dev/null)" = {q(run_id)} ] &&
   ! docker ps --format '{{{{.Names}}}}' | grep -qx sl-app &&
   [ -s "$(sed -n 2p "$marker")" ]; then
  sed -n 2p "$marker"
  exit 0
fi
stamp=$(date -u +%Y%m%dT%H%M%SZ)
base="$dir/simplelogin-$old-$stamp"
n=1
while [ -e "$base.sql" ] || [ -e "$base.sql.gz" ] || [ -e "$base.env" ]; do
  n=$((n + 1))
  base="$dir/simplelogin-$old-$stamp-$n"
done
docker exec sl-db pg_dump --clean --if-exists -U "$user" "$db" > "$base.sql"
[ -s "$base.sql" ] || {{ echo "the database dump is empty" >&2; rm -f "$base.sql"; exit 1; }}
gzip "$base.sql"
cp "$app/.env" "$base.env"
cp "$app/simplelogin.env" "$base.simplelogin.env"
printf '%s\\n%s\\n' {q(run_id)} "$base.sql.gz" > "$marker"
echo "$base.sql.gz\"""")


backup = python.call(name="back up database and config", function=back_up, _if=need)
pull = server.shell(name="pull the new image", commands=[f"docker pull {q(target)}"], _if=need)

# From here on, a failure rolls the host back: the steps go on with the host (their
# failure is remembered, not fatal), each runs only while all before it succeeded.
after = []


def step(name, cmd, **kw):
    before = list(after)

    def still_ok():
        return need() and all(op.did_succeed() for op in before)

    op = server.shell(name=name, commands=[cmd], _if=still_ok, _continue_on_error=True, **kw)
    after.append(op)
    return op


step(
    "stop and remove the app containers",
    """set -eu
present=$(docker ps -a --format '{{.Names}}' | grep -xE 'sl-app|sl-email|sl-job-runner' | sort | tr '\\n' ' ')
[ -z "$present" ] || { docker stop $present && docker rm $present; }""",
)
step(
    "migrate the database",
    "docker run --rm --name sl-migration"
    f" -v {q(app + '/sl:/sl')}"
    f" -v {q(app + '/sl/upload:/code/static/upload')}"
    f" -v {q(app + '/dkim.key:/dkim.key')}"
    f" -v {q(app + '/dkim.pub.key:/dkim.pub.key')}"
    f" -v {q(app + '/simplelogin.env:/code/.env')}"
    f" --network sl-network {q(target)} alembic upgrade head",
)
step(
    "initialise the app",
    "docker run --rm --name sl-init"
    f" -v {q(app + '/sl:/sl')}"
    f" -v {q(app + '/simplelogin.env:/code/.env')}"
    f" -v {q(app + '/dkim.key:/dkim.key')}"
    f" -v {q(app + '/dkim.pub.key:/dkim.pub.key')}"
    f" --network sl-network {q(target)} python init_app.py",
)
step(
    "start the new version",
    f"""set -eu
cd {q(app)}
{{ grep -v '^SL_VERSION=' .env; echo SL_VERSION={q(sl_version)}; }} > .env.fleetup
mv .env.fleetup .env
{compose} up -d""",
)
step(
    "verify health and version",
    f"""deadline=$(( $(date +%s) + {health_timeout} ))
until [ "$(curl -fsS -m 5 http://127.0.0.1:7777/health 2>/dev/null)" = success ]; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "/health did not answer success within {health_timeout} s" >&2; exit 1
  fi
  sleep 2
done
image=$(docker inspect --format '{{{{.Config.Image}}}}' sl-app)
[ "$image" = {q(target)} ] || {{ echo "sl-app runs $image" >&2; exit 1; }}
rm -f {q(backup_dir + '/.upgrade-in-progress')}
echo "healthy at {sl_version}\"""",
)


# --- rollback, only on a host whose upgrade failed after the point of no return ---------
def failed():
    return need() and not all(op.did_succeed() for op in after)


def roll_back():
    run("docker rm -f sl-app sl-email sl-job-runner sl-migration sl-init 2>/dev/null; true")
    run(f"""set -eu
app={q(app)}
user={q(db_user)}
db={q(db_name)}
uri=$(sed -n 's/^DB_URI=//p' "$app/simplelogin.env" | tail -n 1)
[ -n "$user" ] || user=$(printf '%s' "$uri" | sed -n 's|^[a-z0-9+]*://\\([^:@/]*\\).*|\\1|p')
[ -n "$db" ] || db=$(printf '%s' "$uri" | sed -n 's|.*/\\([^/?]*\\).*$|\\1|p')
gzip -dc {q(backup_out.get("path", "").strip())} | docker exec -i sl-db psql -v ON_ERROR_STOP=1 -U "$user" "$db\"""")
    run(f"""set -eu
cd {q(app)}
{{ grep -v '^SL_VERSION=' .env; echo SL_VERSION={q(current.stdout.strip())}; }} > .env.fleetup
mv .env.fleetup .env
{compose} up -d""")
    run(f"""deadline=$(( $(date +%s) + {health_timeout} ))
until [ "$(curl -fsS -m 5 http://127.0.0.1:7777/health 2>/dev/null)" = success ]; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "the old version is NOT healthy" >&2; exit 1
  fi
  sleep 2
done
rm -f {q(backup_dir + '/.upgrade-in-progress')}""")


python.call(name="roll back", function=roll_back, _if=failed, _continue_on_error=True)


# --- audit line and lock release (also after a rollback), then fail a failed host --------
def audit():
    outcome = "failed" if failed() else "ok"
    run(
        f"d={q(app + '/.fleetup')}\n"
        f"printf '%s\\n' \"$(date -u +%Y-%m-%dT%H:%M:%SZ) run={run_id} tool=pyinfra"
        f" from={current.stdout.strip()} to={sl_version} outcome={outcome}\" >> \"$d/audit.log\"\n"
        'rm -rf "$d/lock"'
    )
    if outcome != "ok":
        raise RuntimeError("upgrade failed, rolled back")


python.call(name="audit line and release the lock", function=audit, _if=need)
