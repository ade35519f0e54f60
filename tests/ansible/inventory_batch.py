"""Runs `ansible-inventory` for many jobs with one Python start, for tests/inventory_ansible.rs.

Each `ansible-inventory` process spends half a second importing Ansible, and the tests ask
it dozens of questions. This imports Ansible once, then forks a child per job: each child
is a fresh `ansible-inventory` run (its own globals, nothing left by another job) that
skipped the import. Usage: inventory_batch.py JOBS.json, where JOBS.json is a list of
{"cwd": DIR, "args": [...], "out": FILE}; each child's stdout goes to its FILE, and its
exit status to FILE.status.
"""
import json
import os
import sys

from ansible.cli.inventory import InventoryCLI


def run(job):
    pid = os.fork()
    if pid == 0:
        os.chdir(job["cwd"])
        fd = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        code = 1
        try:
            InventoryCLI.cli_executor(["ansible-inventory"] + job["args"])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
        finally:
            sys.stdout.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    with open(job["out"] + ".status", "w") as f:
        f.write(str(os.waitstatus_to_exitcode(status)))


def main():
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    for job in jobs:
        run(job)


if __name__ == "__main__":
    main()
