#!/usr/bin/env python3
"""Whether a peer sent a host the commands fleetup sent it (tests/bench/peers/README.md).

  same_commands.py FLEETUP_COMMANDS_LOG PEER_COMMANDS_LOG
  same_commands.py FLEETUP_COMMANDS_LOG --ansible ANSIBLE_OUTPUT


Each argument is a host's commands.log (tests/fleet) after a run on the same fleet (the
same directory, brought up afresh between the runs). The lock and the audit line differ
by nature (owner, pid, time): the peer's lock preamble and release suffix
(fleetup_playbook.with_lock_taken / with_release) are taken off its commands, a release
on its own (after a failure elsewhere than the last step) is left out, and
fleetup's first line of each command (its transport's process-group marker), its lock
and release commands, and the `recheck` step it runs again at the host's
turn, are left out of its own. What remains must be the same bytes, in the same order, once what two fleets cannot share
is masked: docker's random ids and the containers' creation times, which the `record the
host's settings` step carries in the discovered JSON, and the time in the backup's name
(the `finish` step echoes it).
Ansible's exec commands are its own (its module's python, which runs the shell text with
`/bin/sh -c`): with --ansible, the shell text of each task is read from the output of
`ansible-playbook -v` with ANSIBLE_CALLBACK_RESULT_FORMAT=json (each result's `cmd`).
Exit 0 when it is; else the first difference is shown.
"""

import difflib
import json
import re
import sys

TAKE = re.compile(r"^taken=\$\(\nd=.*?\ntrue\n\)\n\[ \"\$taken\" = taken \] \|\| \{[^\n]*\}\n", re.S)
# fleetup's transport marks each command with a first line of its own (the remote process
# group, to stop it on a timeout or Ctrl-C): not part of the playbook's command.
PGID = re.compile(r"^printf '\\036fleetup-pgid %s\\n' \"\$\$\" >&2 # fleetup-exec-\S+\n")
RELEASE = re.compile(r"^\(\n(.*)\n\) \|\| exit \$\?\nd=[^\n]*\nprintf '%s\\n' [^\n]* >> \"\$d/audit\.log\"\n.*\ntrue\n$", re.S)


FLEET_RANDOM = [
    (re.compile(r"\b[0-9a-f]{64}\b"), "<id>"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "<short id>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z"), "<time>"),
    (re.compile(r"\b\d{8}T\d{6}Z\b"), "<time>"),
]


def masked(cmd):
    for pattern, mask in FLEET_RANDOM:
        cmd = pattern.sub(mask, cmd)
    return cmd


def sessions(path):
    out = []
    with open(path) as f:
        for line in f:
            e = json.loads(line)
            if e.get("kind") == "session" and e.get("ev") == "start":
                out.append(masked(e["cmd"]))
    return out


def is_lock_command(cmd):
    return cmd.startswith("d=") and (
        '\nmkdir -p "$d" || exit 1\n' in cmd or '>> "$d/audit.log"' in cmd
        or '&& rm -rf "$d/lock"' in cmd
    )


def fleetup_commands(path):
    cmds = [c for c in (PGID.sub("", c, count=1) for c in sessions(path)) if not is_lock_command(c)]
    # The pre-flight's `discover the host` (its second command) again at the host's turn.
    if len(cmds) > 4 and cmds[4] == cmds[1]:
        del cmds[4]
    return cmds


def strip_lock(cmd):
    cmd = TAKE.sub("", cmd, count=1)
    m = RELEASE.match(cmd)
    return m.group(1) if m else cmd


def peer_commands(commands):
    """A peer's commands without the lock preamble and release suffix, and without a
    release on its own (a host that failed otherwise than in its last step)."""
    return [c for c in map(strip_lock, commands) if not is_lock_command(c)]


def ansible_commands(path):
    out = []
    with open(path) as f:
        for line in f:
            m = re.match(r"^(ok|changed|fatal): \[[^\]]+\]:? (=>|FAILED! =>) (\{.*\})$", line.rstrip("\n"))
            if m:
                cmd = json.loads(m.group(3)).get("cmd")
                if isinstance(cmd, str):
                    out.append(masked(cmd))
    return out


def main():
    a = fleetup_commands(sys.argv[1])
    if sys.argv[2] == "--ansible":
        b = peer_commands(ansible_commands(sys.argv[3]))
    else:
        b = peer_commands(sessions(sys.argv[2]))
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            print(f"command {i + 1} differs:")
            sys.stdout.writelines(difflib.unified_diff(
                x.splitlines(True), y.splitlines(True), "fleetup", "peer", n=1))
            return 1
    if len(a) != len(b):
        print(f"fleetup sent {len(a)} commands (lock and recheck aside), the peer {len(b)}")
        return 1
    print(f"the same {len(a)} commands, byte for byte (the lock and audit line aside)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
