#!/usr/bin/env python3
"""One host of the OpenSSH floor's upgrade (openssh.sh): the shipped playbook's commands,
rendered by fleetup_playbook.py between commands (each template may read what an
earlier command printed), each run with the `ssh` client over one ControlMaster
connection. No orchestrator: every host has its own process, all at once, no fleet-wide
pre-flight barrier.

  openssh_host.py CONTROL_DIR KNOWN_HOSTS SL_VERSION RUN_ID NAME ADDRESS PORT USER KEY VARS_JSON
Exit 0 when the host ended well (upgraded, or nothing to do); the failure on stderr.
"""

import json
import subprocess
import sys

import fleetup_playbook as fp


def main():
    ctl, known_hosts, sl_version, run_id, name, addr, port, user, key, host_vars = sys.argv[1:11]
    ssh = [
        "ssh", "-n", "-o", "ControlMaster=auto", "-o", f"ControlPath={ctl}/{name}",
        "-o", "ControlPersist=60", "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
        "-o", "PreferredAuthentications=publickey", "-o", "IdentitiesOnly=yes",
        "-i", key, "-p", port, f"{user}@{addr}",
    ]

    def execute(command):
        # One argument after the destination: ssh sends it as the exec command, byte for byte.
        p = subprocess.run(ssh + [command], capture_output=True, text=True)
        return p.returncode, p.stdout, p.stderr

    data = json.loads(host_vars)
    data["sl_version"] = sl_version
    run = fp.HostRun(fp.Playbook(), data, execute, fp.owner(run_id))
    try:
        ok = run.run()
    finally:
        subprocess.run(ssh[:-1] + ["-O", "exit", ssh[-1]], capture_output=True)
    print(f"{name}: {run.outcome or 'failed'}, {run.commands} commands")
    if not ok:
        print(f"{name}: {run.failure()}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
