"""Ansible filters for upgrade.ansible.yml: the shipped playbook's commands and `when`s,
rendered by fleetup_playbook.py (one directory up) with fleetup's own template semantics
and filters, from the host's variables as Ansible holds them (inventory, -e, registers).

  shell: {cmd: "{{ 'steps/pull the new image' | fleetup_command(hostvars[inventory_hostname]) }}"}
  when: "'steps/pull the new image' | fleetup_when(hostvars[inventory_hostname])"
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fleetup_playbook as fp  # noqa: E402


def _step(ref):
    section, name = ref.split("/", 1)
    return fp.shared_playbook().find(section, name)


def _plain(value):
    """Ansible's tagged values as plain Python data."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def _registered(result):
    """Ansible's result as fleetup registers it (only the output and the code: its lists
    of lines are fleetup's to make)."""
    if "stdout" not in result:
        return dict(fp.registered("", "", 0), skipped=bool(result.get("skipped")))
    return fp.registered(str(result["stdout"]), str(result.get("stderr", "")), int(result.get("rc", 0)))


def _run(hostvars):
    """The host as fleetup_playbook sees it: the playbook's defaults under the host's
    inventory variables and -e, its registered results, and where its lock stands."""
    pb = fp.shared_playbook()
    registers = {s["register"] for s in pb.preflight + pb.steps + pb.rollback if s.get("register")}
    names = set(pb.defaults) | {"sl_version", "fleetup_dir"}
    data = {n: _plain(hostvars[n]) for n in names if n in hostvars}
    run = fp.HostRun(pb, data, None, str(hostvars["fleetup_owner"]))
    for name in registers:
        if name in hostvars:
            run.scope.register(name, _registered(hostvars[name]))
    return run


def fleetup_when(ref, hostvars):
    _, step = _step(ref)
    run = _run(hostvars)
    return run.pb.runs(step, run.scope)


def fleetup_command(ref, hostvars, lock=None, outcome=None):
    """The step's command; `lock='take'`: the lock first, the step only when it was
    taken; `lock='release'`: the audit line (`outcome`) and the release after it, when
    it succeeded."""
    _, step = _step(ref)
    run = _run(hostvars)
    command = run.pb.command(step, run.scope)
    if lock == "take":
        command = fp.with_lock_taken(fp.take_command(run.pb.lock_dir(run.scope), run.owner), command)
    elif lock == "release":
        command = fp.with_release(command, _release(run, outcome))
    return command


def _release(run, outcome):
    return fp.release_command(
        run.pb.lock_dir(run.scope), run.owner, run.pb.audit_of(run.scope, run.owner, outcome)
    )


def fleetup_release(outcome, hostvars):
    """The audit line and the release on their own (a host that failed otherwise)."""
    return _release(_run(hostvars), outcome)


def fleetup_owner(run_id):
    """The lock's owner (run id, operator, controller, pid, start), one per run."""
    return fp.shared_owner(str(run_id))


def fleetup_preload(hosts):
    """Loads the playbook and compiles its templates, returning `hosts` as it is: a play's
    `hosts:` is templated in ansible-playbook's own process, before it forks a worker per
    task and host, which then start with them (else each worker loads and compiles what
    it renders: ~3x the filters' CPU, measured)."""
    fp.shared_playbook().compile_all()
    return hosts


class FilterModule:
    def filters(self):
        return {
            "fleetup_when": fleetup_when,
            "fleetup_command": fleetup_command,
            "fleetup_release": fleetup_release,
            "fleetup_owner": fleetup_owner,
            "fleetup_preload": fleetup_preload,
        }
