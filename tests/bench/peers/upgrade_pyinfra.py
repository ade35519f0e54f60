# The pyinfra version of playbooks/simplelogin-upgrade.yml, for tests/bench/peers.sh: the
# shipped playbook's own commands, rendered from it by fleetup_playbook.py (beside this
# file, on PYTHONPATH) with fleetup's template semantics, the same `when`s, the host lock
# in the first step's command and the audit line and release in the last's, and the same
# rollback after the point of no return: 15 commands per upgraded host.
#
#   PYTHONPATH=tests/bench/peers pyinfra INVENTORY.py tests/bench/peers/upgrade_pyinfra.py \
#     -y --parallel 20 --data sl_version=v4.66.1 --data bench_run_id=ID
#
# pyinfra builds every host's operations first and runs them afterwards, one operation on
# every host before the next; the commands depend on what earlier ones printed (discover
# -> found -> every template), so each step is a python.call that renders its command at
# run time and runs it on the host's one SSH connection (paramiko) as it is, without
# pyinfra's `sh -c '...'` wrapping (_shell_executable=None). The pre-flight therefore ends
# on every host before any host's first step, as fleetup's fleet-wide pre-flight.
# pyinfra gives a command's success, not its exit code: `rc` of a registered result is 0
# or 1 (no template reads it).
from pyinfra import host
from pyinfra.operations import python

import fleetup_playbook as fp

data = host.data.dict()
if not data.get("sl_version"):
    raise SystemExit("sl_version is required (--data sl_version=...)")
playbook = fp.shared_playbook()
owner = fp.shared_owner(str(data.get("bench_run_id") or "pyinfra"))


def execute(command):
    ok, out = host.run_shell_command(command=command, _shell_executable=None)
    return (0 if ok else 1), out.stdout, out.stderr


run = fp.HostRun(playbook, data, execute, owner)


def check(ok):
    if not ok:
        raise RuntimeError(run.failure() or "failed")


# A host whose pre-flight fails drops out; a failed step is an ignored error (pyinfra's
# _continue_on_error only goes on within an operation), so that the host stays for its
# rollback, and the last operation fails it.
for i, step in enumerate(playbook.preflight):
    python.call(name=step["name"], function=lambda i=i: check(run.preflight(i)))
for i, step in enumerate(playbook.steps):
    python.call(name=step["name"], function=lambda i=i: check(run.step(i)), _ignore_errors=True)
for i, step in enumerate(playbook.rollback):
    python.call(
        name=f"rollback: {step['name']}", function=lambda i=i: check(run.roll_back(i)),
        _ignore_errors=True, _if=run.past_no_return,
    )
python.call(name="end of the host", function=lambda: check(run.finish()))
