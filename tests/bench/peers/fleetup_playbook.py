"""fleetup's playbook, run from Python: the peers of tests/bench/peers.sh (Ansible's filter
plugin, pyinfra's deploy, the OpenSSH floor's per-host driver) send the remote commands
that fleetup sends, rendered from the shipped playbook itself
(playbooks/simplelogin-upgrade.yml and its vars_files) by fleetup_templates.py, not from
a copy of it. Ported from fleetup, with the same semantics:
- the host lock and audit line (src/lock.rs): take_command, release_command, audit_line;
- the procedure (src/engine/host_run.rs): the pre-flight, the steps with their `when`,
  the rollback of a failure at or after the point of no return.

The remote commands per upgraded host: the 4 pre-flight reads, then the 11 steps, the
host lock taken in the same command as the first step (the step runs only when the lock
was taken) and the audit line and the release in the same command as the last (run only
when the step succeeded; the command's exit code is the step's): 15 commands.
"""

import getpass
import json
import os
import socket
import time
import unicodedata

import yaml

from fleetup_templates import (
    Scope,
    Templates,
    is_template,
    registered,
    shell_quote,
    single_expression,
)

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
PLAYBOOK = os.path.join(ROOT, "playbooks", "simplelogin-upgrade.yml")


# --- the host lock and audit line (src/lock.rs) -----------------------------------------


def owner(run_id, pid=None, started=None):
    """Who holds a lock, as fleetup's Owner::me: the JSON text written in owner.json."""
    operator = next((os.environ[k] for k in ("USER", "LOGNAME") if os.environ.get(k)), None)
    if operator is None:
        try:
            operator = getpass.getuser()
        except (KeyError, OSError):
            operator = f"uid {os.getuid()}"
    me = {
        "run_id": run_id,
        "operator": operator,
        "controller": socket.gethostname(),
        "pid": os.getpid() if pid is None else pid,
        "started": int(time.time()) if started is None else started,
    }
    return json.dumps(me, ensure_ascii=False, separators=(",", ":"))


def take_command(directory, owner_json):
    return (
        f'd={shell_quote(directory)}\n'
        'mkdir -p "$d" || exit 1\n'
        "n=0\n"
        "while :; do\n"
        '  if mkdir "$d/lock" 2>/dev/null; then\n'
        f"    printf '%s\\n' {shell_quote(owner_json)} > \"$d/lock/owner.json.new\" && mv \"$d/lock/owner.json.new\" \"$d/lock/owner.json\" && echo taken\n"
        "    exit\n"
        "  fi\n"
        "  i=0\n"
        '  while [ -d "$d/lock" ] && [ ! -s "$d/lock/owner.json" ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done\n'
        '  [ -d "$d/lock" ] || [ $n -ge 3 ] && break\n'
        "  n=$((n + 1))\n"
        "done\n"
        'echo held $(( $(date +%s) - $(stat -c %Y "$d/lock" 2>/dev/null || date +%s) ))\n'
        'cat "$d/lock/owner.json" 2>/dev/null\n'
        "true\n"
    )


def release_command(directory, owner_json, line):
    return (
        f"d={shell_quote(directory)}\n"
        f"printf '%s\\n' {shell_quote(line)} >> \"$d/audit.log\"\n"
        f'[ "$(cat "$d/lock/owner.json" 2>/dev/null)" = {shell_quote(owner_json)} ] && rm -rf "$d/lock"\n'
        "true\n"
    )


def audit_line(owner_json, frm, to, outcome):
    me = json.loads(owner_json)

    def word(s):
        s = str(s).strip()
        return "".join("_" if c.isspace() or unicodedata.category(c) == "Cc" else c for c in s) if s else "-"

    return (
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} run={word(me['run_id'])}"
        f" operator={word(me['operator'])} controller={word(me['controller'])}"
        f" from={word(frm)} to={word(to)} outcome={word(outcome)}"
    )


# The exit code of the first step's command when the lock is held by another run: the
# step did not run (EX_TEMPFAIL).
LOCK_HELD = 75


def with_lock_taken(take, command):
    """The first step's command: the lock first; the step only when the lock was taken."""
    return (
        f"taken=$(\n{take})\n"
        f'[ "$taken" = taken ] || {{ printf \'host lock: %s\\n\' "$taken" >&2; exit {LOCK_HELD}; }}\n'
        f"{command}"
    )


def with_release(command, release):
    """The last step's command: the audit line and the release after it, only when it
    succeeded; the step's own exit code."""
    return f"(\n{command}\n) || exit $?\n{release}"


# --- the playbook and its procedure ------------------------------------------------------


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Playbook:
    def __init__(self, path=PLAYBOOK):
        with open(path) as f:
            doc = yaml.load(f, Loader=_LOADER)
        self.defaults = {}
        for vf in doc.get("vars_files") or []:
            with open(os.path.join(os.path.dirname(path), vf)) as f:
                self.defaults.update(yaml.load(f, Loader=_LOADER) or {})
        self.defaults.update(doc.get("vars") or {})
        self.doc = doc
        self.preflight = doc.get("preflight") or []
        self.steps = doc.get("steps") or []
        self.rollback = doc.get("rollback") or []
        self.lock = doc.get("lock")
        self.audit = doc.get("audit") or {}
        self.point_of_no_return = next(
            (i for i, s in enumerate(self.steps) if s.get("point_of_no_return")), None
        )
        self.templates = Templates()

    def compile_all(self):
        """Compiles every template of the playbook now (a process that forks workers, as
        Ansible's, then compiles them once, not once per worker)."""
        for value in list(self.defaults.values()) + [
            v for step in self.preflight + self.steps + self.rollback
            for v in [step.get("shell"), *(step.get("vars") or {}).values()]
        ]:
            if isinstance(value, str) and is_template(value):
                expression = single_expression(value)
                if expression is None:
                    self.templates._template(value)
                else:
                    self.templates._expression(expression)
        for step in self.preflight + self.steps + self.rollback:
            if isinstance(step.get("when"), str):
                self.templates._expression(step["when"])
        return self

    def section(self, name):
        return {"preflight": self.preflight, "steps": self.steps, "rollback": self.rollback}[name]

    def find(self, section, name):
        for i, step in enumerate(self.section(section)):
            if step["name"] == name:
                return i, step
        raise KeyError(f"no step `{name}` in the playbook's {section}")

    def scope(self, host_vars):
        """A host's scope: the playbook's defaults under the inventory's and -e's."""
        raw = dict(self.defaults)
        raw.update(host_vars)
        return Scope(raw, self.templates)

    def runs(self, step, scope):
        when = step.get("when")
        if when is None or when is True:
            return True
        if when is False:
            return False
        return self.templates.eval(str(when), scope.with_vars(step.get("vars")))

    def command(self, step, scope):
        return self.templates.render(step["shell"], scope.with_vars(step.get("vars")))

    def lock_dir(self, scope):
        return self.templates.render(self.lock["dir"], scope)

    def audit_of(self, scope, owner_json, outcome):
        frm = self.templates.render(self.audit.get("from", ""), scope)
        to = self.templates.render(self.audit.get("to", ""), scope)
        return audit_line(owner_json, frm, to, outcome)


class HostRun:
    """One host through the playbook, on `execute(command) -> (rc, stdout, stderr)`.
    `preflight`, `step` and `roll_back` run one command each (or none), so that a tool
    can run the fleet's pre-flight before any host's steps; `run` runs it all. Each says
    False when its own command failed (a host that failed earlier runs nothing more)."""

    def __init__(self, playbook, host_vars, execute, owner_json):
        self.pb = playbook
        self.scope = playbook.scope(host_vars)
        self.execute = execute
        self.owner = owner_json
        self.locked = False
        self.failed_at = None  # (section, index, message)
        self.rolled_back = False
        self.outcome = None
        self.commands = 0

    def _exec(self, command):
        self.commands += 1
        return self.execute(command)

    def _fail(self, section, index, message):
        self.failed_at = (section, index, message)
        return False

    def preflight(self, index):
        if self.failed_at:
            return True
        step = self.pb.preflight[index]
        if not self.pb.runs(step, self.scope):
            return True
        rc, out, err = self._exec(self.pb.command(step, self.scope))
        if step.get("register"):
            self.scope.register(step["register"], registered(out, err, rc))
        if rc != 0:
            return self._fail("preflight", index, (err.strip().splitlines() or [f"exit {rc}"])[-1])
        return True

    def step(self, index):
        """Runs step `index` if the host is still going and its `when` holds."""
        if self.failed_at or self.outcome:
            return True  # nothing ran: the failure was reported where it happened
        steps = self.pb.steps
        step = steps[index]
        if not self.pb.runs(step, self.scope):
            if index == len(steps) - 1:
                self.outcome = "skipped" if not self.locked else "ok"
            return True
        command = self.pb.command(step, self.scope)
        if self.pb.lock and not self.locked:
            command = with_lock_taken(take_command(self.pb.lock_dir(self.scope), self.owner), command)
        last = index == len(steps) - 1
        if last and self.pb.lock:
            release = release_command(
                self.pb.lock_dir(self.scope), self.owner, self.pb.audit_of(self.scope, self.owner, "ok")
            )
            command = with_release(command, release)
        rc, out, err = self._exec(command)
        if self.pb.lock and not self.locked:
            # pyinfra tells success from failure, not the exit code: the message decides.
            if rc != 0 and err.startswith("host lock: "):
                self.outcome = "failed"
                return self._fail("steps", index, err.strip())
            self.locked = True
        if step.get("register"):
            self.scope.register(step["register"], registered(out, err, rc))
        if rc != 0:
            return self._fail("steps", index, (err.strip().splitlines() or [f"exit {rc}"])[-1])
        if last:
            self.locked = False
            self.outcome = "ok"
        return True

    def past_no_return(self):
        ponr = self.pb.point_of_no_return
        return (
            self.failed_at is not None and self.failed_at[0] == "steps"
            and ponr is not None and self.failed_at[1] >= ponr
        )

    def start_rollback(self):
        """Steps that never ran register `skipped`, as in fleetup, before the rollback."""
        for step in self.pb.steps[self.failed_at[1] + 1:]:
            if step.get("register"):
                self.scope.register(step["register"], dict(registered("", "", 0), skipped=True))

    def roll_back(self, index):
        """Runs rollback step `index` on a host that failed past the point of no return;
        the last one carries the audit line and the release."""
        if not self.past_no_return() or self.outcome:
            return True
        if index == 0:
            self.start_rollback()
        step = self.pb.rollback[index]
        if not self.pb.runs(step, self.scope):
            return True
        command = self.pb.command(step, self.scope)
        last = index == len(self.pb.rollback) - 1
        if last and self.locked:
            release = release_command(
                self.pb.lock_dir(self.scope), self.owner,
                self.pb.audit_of(self.scope, self.owner, "rolled_back"),
            )
            command = with_release(command, release)
        rc, out, err = self._exec(command)
        if step.get("register"):
            self.scope.register(step["register"], registered(out, err, rc))
        if rc != 0:
            self.outcome = "rollback_failed"
            return False
        if last:
            self.locked = False
            self.outcome = "rolled_back"
        return True

    def finish(self):
        """A host that ended otherwise than through its last step or the rollback's
        still holding the lock: the audit line and the release, on their own."""
        if self.failed_at and not self.outcome:
            self.outcome = "rolled_back" if self.past_no_return() else "failed"
        if self.locked:
            outcome = self.outcome or "failed"
            self._exec(release_command(
                self.pb.lock_dir(self.scope), self.owner, self.pb.audit_of(self.scope, self.owner, outcome)
            ))
            self.locked = False
        return self.outcome in ("ok", "skipped", None) and not self.failed_at

    def run(self):
        for i in range(len(self.pb.preflight)):
            if not self.preflight(i):
                return self.finish()
        for i in range(len(self.pb.steps)):
            self.step(i)
        if self.past_no_return():
            for i in range(len(self.pb.rollback)):
                if not self.roll_back(i):
                    break
        return self.finish()

    def failure(self):
        if not self.failed_at:
            return None
        section, index, message = self.failed_at
        name = self.pb.section(section)[index]["name"]
        return f"{self.outcome or 'failed'} at `{name}`: {message}"


# One playbook and one lock owner per process (a pyinfra deploy file runs once per host;
# Ansible's workers are forked from the process that first loads this module).
_SHARED = {}


def shared_playbook():
    if "playbook" not in _SHARED:
        _SHARED["playbook"] = Playbook()
    return _SHARED["playbook"]


def shared_owner(run_id):
    key = ("owner", run_id)
    if key not in _SHARED:
        _SHARED[key] = owner(run_id)
    return _SHARED[key]
