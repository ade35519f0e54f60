#!/usr/bin/python3
"""Run one command in a cgroup of its own and measure its whole process tree.

  measure.py --out RUN.json [--sample-ms 50] -- COMMAND [ARGS...]

stdin is /dev/null; the command's stdout and stderr are those of measure.py (redirect
them). Writes RUN.json with:

  wall_s        from just before the exec to the command's exit
  rc            its exit code (128 + N when killed by signal N)
  cpu_s         user + sys of every process that was ever in the cgroup, the command's
                children, grandchildren and daemons included (an ssh ControlPersist master
                that detached from Ansible is still counted): cgroup v2 cpu.stat, else v1
                cpuacct
  cpu_user_s, cpu_sys_s
  mem_peak_mb   the cgroup's peak memory: v2 memory.peak, else v1 memory.max_usage_in_bytes.
                It is the peak of the sum over the tree (anonymous memory, page tables,
                kernel memory charged to it, and page cache the tree brought in or wrote)
  max_rss_mb    the command's own peak resident set, from the kernel (wait4's ru_maxrss):
                exact for a tool that is one process, as fleetup is; its children not counted
  rss_peak_mb   the highest sum, over the processes in the cgroup at one instant, of their
                resident set size (sampled every --sample-ms; shared pages of forked workers
                count once per process, so this over-counts a forking tool)
  procs_max     the most processes seen in the cgroup at once
  method        which cgroup interface was used
  machine_cpu_s CPU time the whole machine spent busy during the run (/proc/stat: the tool,
                the simulated fleet, and anything else running)

After the command exits, processes it left in the cgroup (ControlPersist masters) are
killed (they are ours: the command started them) and the cgroup is removed.
Without any usable cgroup it falls back to sampling the process tree by parent pid and
to the rusage of waited-for children (then daemons are missed: method says so).
Only the standard library.
"""

import argparse
import json
import os
import signal
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


def own_cgroups():
    """controller -> path relative to its hierarchy, from /proc/self/cgroup."""
    out = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, ctrls, path = line.rstrip("\n").split(":", 2)
            if hid == "0":
                out["unified"] = path
            for c in ctrls.split(","):
                if c:
                    out[c] = path
    return out


def v2_root():
    for cand in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if os.path.exists(os.path.join(cand, "cgroup.controllers")):
            return cand
    return None


class Cgroups:
    """One new cgroup per run: v2 with memory and cpu if it has them, else v1 memory +
    cpuacct, else none."""

    def __init__(self, name):
        self.dirs = []
        self.method = "none"
        self.mem = None  # (file of the peak, kind)
        self.cpu = None
        own = own_cgroups()
        root = v2_root()
        if root:
            parent = os.path.join(root, own.get("unified", "/").lstrip("/"))
            try:
                with open(os.path.join(parent, "cgroup.subtree_control")) as f:
                    enabled = f.read().split()
                if "memory" not in enabled:
                    with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
                        f.write("+memory +cpu")
                    with open(os.path.join(parent, "cgroup.subtree_control")) as f:
                        enabled = f.read().split()
                if "memory" in enabled:
                    d = os.path.join(parent, name)
                    os.mkdir(d)
                    self.dirs = [d]
                    if os.path.exists(os.path.join(d, "memory.peak")):
                        self.method = "cgroup2"
                        self.mem = os.path.join(d, "memory.peak")
                        self.cpu = os.path.join(d, "cpu.stat")
                        self.procs = os.path.join(d, "cgroup.procs")
                        return
                    os.rmdir(d)
                    self.dirs = []
            except OSError:
                self._remove_dirs()
        # cgroup v1: memory and cpuacct hierarchies
        try:
            m = os.path.join("/sys/fs/cgroup/memory", own.get("memory", "/").lstrip("/"), name)
            c = os.path.join("/sys/fs/cgroup/cpuacct", own.get("cpuacct", "/").lstrip("/"), name)
            os.mkdir(m)
            self.dirs.append(m)
            os.mkdir(c)
            self.dirs.append(c)
            self.method = "cgroup1"
            self.mem = os.path.join(m, "memory.max_usage_in_bytes")
            self.cpu = c
            self.procs = os.path.join(m, "cgroup.procs")
        except OSError:
            self._remove_dirs()
            self.method = "none"

    def join(self, pid):
        for d in self.dirs:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def pids(self):
        try:
            with open(self.procs) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def cpu_s(self):
        if self.method == "cgroup2":
            vals = {}
            with open(self.cpu) as f:
                for line in f:
                    k, v = line.split()
                    vals[k] = int(v)
            return vals["user_usec"] / 1e6, vals["system_usec"] / 1e6, vals["usage_usec"] / 1e6
        # v1: cpuacct.usage is exact (ns); split it by cpuacct.stat's ticks
        with open(os.path.join(self.cpu, "cpuacct.usage")) as f:
            total = int(f.read()) / 1e9
        vals = {}
        with open(os.path.join(self.cpu, "cpuacct.stat")) as f:
            for line in f:
                k, v = line.split()
                vals[k] = int(v)
        ticks = vals.get("user", 0) + vals.get("system", 0)
        user = total * vals.get("user", 0) / ticks if ticks else total
        return user, total - user, total

    def mem_peak_mb(self):
        with open(self.mem) as f:
            return int(f.read()) / 2**20

    def remove(self):
        for _ in range(50):
            left = self.pids()
            if not left:
                break
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.05)
        for d in self.dirs:
            for _ in range(20):
                try:
                    os.rmdir(d)
                    break
                except OSError:
                    time.sleep(0.05)

    def _remove_dirs(self):
        """Undoes a half-made cgroup (nothing joined it yet)."""
        for d in self.dirs:
            try:
                os.rmdir(d)
            except OSError:
                pass
        self.dirs = []


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def tree_pids(root):
    """The process tree under root, from /proc's parent pids (fallback without cgroups)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def machine_busy_s():
    """Busy CPU seconds of the whole machine so far (all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / TICK


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--sample-ms", type=float, default=50)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("no command")

    cg = Cgroups(f"fleetup-bench-{os.getpid()}")
    stat0 = machine_busy_s()
    r, w = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)  # wait until the parent has put us in the cgroup
        os.close(r)
        fd = os.open("/dev/null", os.O_RDONLY)
        os.dup2(fd, 0)
        try:
            os.execvp(cmd[0], cmd)
        except OSError as e:
            print(f"measure.py: {cmd[0]}: {e}", file=sys.stderr)
            os._exit(127)
    os.close(r)
    if cg.method != "none":
        cg.join(pid)
    t0 = time.monotonic()
    os.write(w, b"x")
    os.close(w)

    rss_peak = 0
    procs_max = 0
    status = None
    ru = None
    while True:
        done, st, rusage = os.wait4(pid, os.WNOHANG)
        if done:
            t1 = time.monotonic()
            status, ru = st, rusage
            break
        pids = cg.pids() if cg.method != "none" else tree_pids(pid)
        procs_max = max(procs_max, len(pids))
        rss_peak = max(rss_peak, sum(rss_bytes(p) for p in pids))
        time.sleep(a.sample_ms / 1000)

    stat1 = machine_busy_s()
    if os.WIFEXITED(status):
        rc = os.WEXITSTATUS(status)
    else:
        rc = 128 + os.WTERMSIG(status)
    res = {"wall_s": t1 - t0, "rc": rc, "rss_peak_mb": rss_peak / 2**20, "procs_max": procs_max,
           "max_rss_mb": ru.ru_maxrss / 1024, "method": cg.method, "machine_cpu_s": stat1 - stat0}
    if cg.method != "none":
        user, sys_, total = cg.cpu_s()
        res.update(cpu_user_s=user, cpu_sys_s=sys_, cpu_s=total, mem_peak_mb=cg.mem_peak_mb())
        cg.remove()
    else:
        res.update(cpu_user_s=ru.ru_utime, cpu_sys_s=ru.ru_stime, cpu_s=ru.ru_utime + ru.ru_stime,
                   mem_peak_mb=rss_peak / 2**20, method="tree (no cgroup: detached daemons missed)")
    with open(a.out, "w") as f:
        json.dump(res, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
