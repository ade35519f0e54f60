#!/usr/bin/python3
"""Arithmetic of tests/bench/peers.sh (standard library only).

  analyse.py verify --fleet DIR --workload upgrade|trivial --version V --sim FLEET_SIM \
                    --run RUN.json [--tool T --hosts N --forks F --run-index R]
      checks the fleet after one run and adds to RUN.json (written by measure.py): ok
      (every host upgraded and healthy, or ran its 14 trivial commands, and the tool exited
      0), the hosts that were not, the SSH commands per host (from the hosts' command
      logs), the logins per host (sshd logs), the listening sshds' CPU (a lower bound of the fleet's).
  analyse.py report [--scale SCALE.json] RUN.json...
      the tables (median of the runs of each tool, workload and size), the ratios, and
      PASS/MISS per target of issue 8; exit 1 when a target is missed.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys

TARGET_VERSION_OK = ("sl-db", "sl-app", "sl-email", "sl-job-runner")
TOOLS = ["fleetup", "ansible", "pyinfra", "openssh"]


def bench_analyse():
    """tests/bench/analyse.py, the fleetup-only benchmark's arithmetic: its fleet measures
    serve here too (loaded by path: this file has the same name)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "analyse.py")
    spec = importlib.util.spec_from_file_location("bench_analyse", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

def cmd_verify(a):
    with open(os.path.join(a.fleet, "fleet.json")) as f:
        fleet = json.load(f)
    with open(a.run) as f:
        run = json.load(f)
    bad = []
    sessions = []
    for h in fleet["hosts"]:
        name = h["name"]
        n = 0
        failed_cmds = 0
        try:
            with open(os.path.join(h["host_dir"], "commands.log")) as f:
                for line in f:
                    try:
                        r = json.loads(line)
                    except ValueError:
                        continue
                    if r.get("kind") != "session":
                        continue
                    if r["ev"] == "start":
                        n += 1
                    elif r.get("rc", 0) != 0 or "signal" in r:
                        failed_cmds += 1
        except OSError:
            pass
        sessions.append(n)
        if a.workload == "trivial":
            if n < 14:
                bad.append(f"{name}: {n} commands")
            continue
        out = subprocess.run([a.sim, "state", "--dir", a.fleet, "--host", name],
                             capture_output=True, text=True)
        try:
            st = json.loads(out.stdout)
        except ValueError:
            bad.append(f"{name}: no state ({out.stderr.strip()[:100]})")
            continue
        running = {c["name"]: c for c in st.get("containers", []) if c.get("status") == "running"}
        image = running.get("sl-app", {}).get("image", "")
        if st.get("serving") != a.version:
            bad.append(f"{name}: serving {st.get('serving')} (sl-app image {image or 'not running'})")
        elif st.get("env_version") != a.version:
            bad.append(f"{name}: .env has {st.get('env_version')}")
        elif any(c not in running for c in TARGET_VERSION_OK):
            bad.append(f"{name}: not running: {[c for c in TARGET_VERSION_OK if c not in running]}")
    logins = 0
    for s in fleet["sshds"]:
        try:
            with open(s["log"], errors="replace") as f:
                logins += sum(1 for line in f if "Accepted publickey" in line)
        except OSError:
            pass
    nh = len(fleet["hosts"])
    run.update(
        tool=a.tool, workload=a.workload, hosts=nh, forks=a.forks, run_index=a.run_index,
        ok=run.get("rc") == 0 and not bad, bad_hosts=bad[:10], bad_count=len(bad),
        cmds_per_host=statistics.mean(sessions) if sessions else 0,
        logins_per_host=logins / nh if nh else 0,
        fleet_cpu_s=bench_analyse().sshd_cpu(a.fleet),
    )
    with open(a.run, "w") as f:
        json.dump(run, f)
    status = "ok" if run["ok"] else f"FAILED (exit {run.get('rc')}, {len(bad)} hosts not done: {'; '.join(bad[:3])})"
    print(f"{a.tool} {a.workload} N={nh} run {a.run_index}: {status}; wall {run['wall_s']:.2f} s, "
          f"cpu {run['cpu_s']:.2f} s, mem {run['mem_peak_mb']:.1f} MB (rss sum {run['rss_peak_mb']:.1f}), "
          f"{run['cmds_per_host']:.1f} cmds/host, {run['logins_per_host']:.2f} logins/host, "
          f"machine cpu {run.get('machine_cpu_s', float('nan')):.2f} s")
    return 0


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt(x, d=2):
    if x is None or x != x:
        return "–"
    return f"{x:.{d}f}"


def cmd_report(a):
    runs = []
    for p in a.runs:
        with open(p) as f:
            runs.append(json.load(f))
    groups = {}
    for r in runs:
        groups.setdefault((r["workload"], r["hosts"]), {}).setdefault(r["tool"], []).append(r)
    summary = {}  # (workload, hosts, tool) -> medians
    for (wl, n), tools in groups.items():
        for tool, rs in tools.items():
            good = [r for r in rs if r["ok"]]
            summary[(wl, n, tool)] = {
                "runs": len(rs), "good": len(good),
                "wall": med([r["wall_s"] for r in good]),
                "cpu": med([r["cpu_s"] for r in good]),
                "mem": med([r["mem_peak_mb"] for r in good]),
                "rss": med([r["rss_peak_mb"] for r in good]),
                "fleet": med([r["fleet_cpu_s"] for r in good]),
                "machine": med([r.get("machine_cpu_s", float("nan")) for r in good]),
                "cmds": med([r["cmds_per_host"] for r in good]),
                "logins": med([r["logins_per_host"] for r in good]),
                "procs": max([r.get("procs_max", 0) for r in good], default=0),
                "forks": rs[0].get("forks"),
                "failed": [f"run {r['run_index']}: exit {r['rc']}, {r['bad_count']} hosts not done"
                           for r in rs if not r["ok"]],
            }
    method = runs[0].get("method", "?") if runs else "?"

    out = []
    for wl in ("upgrade", "trivial"):
        sizes = sorted({n for (w, n) in groups if w == wl})
        if not sizes:
            continue
        title = ("the upgrade (playbooks/simplelogin-upgrade.yml and its equivalents)"
                 if wl == "upgrade" else "14 trivial steps (`true`) per host")
        out.append(f"### Workload: {title}\n")
        out.append("| hosts | tool | forks | wall s | × fleetup | cpu s | × fleetup | peak MB | rss-sum MB | "
                   "cmds/host | logins/host | machine cpu s | good runs |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for n in sizes:
            base = summary.get((wl, n, "fleetup"))
            for tool in TOOLS:
                s = summary.get((wl, n, tool))
                if not s:
                    continue
                rw = s["wall"] / base["wall"] if base and base["good"] and s["good"] else None
                rc = s["cpu"] / base["cpu"] if base and base["good"] and s["good"] else None
                forks = "all" if tool == "openssh" else str(s["forks"])
                out.append(
                    f"| {n} | {tool} | {forks} | {fmt(s['wall'])} | {fmt(rw, 1)} | {fmt(s['cpu'])} | {fmt(rc, 1)} | "
                    f"{fmt(s['mem'], 1)} | {fmt(s['rss'], 1)} | {fmt(s['cmds'], 1)} | {fmt(s['logins'], 2)} | "
                    f"{fmt(s['machine'], 2)} | {s['good']}/{s['runs']} |")
        out.append("")
        for (w, n, tool), s in sorted(summary.items()):
            if w == wl and s["failed"]:
                out.append(f"- {tool} N={n}: failed measurements (not in the medians): {'; '.join(s['failed'])}")
        out.append("")

    scale = None
    if a.scale:
        with open(a.scale) as f:
            scale = json.load(f)
        hs = scale["hosts"] * scale["cmds_per_host"]
        out.append("### Scale: fleetup alone, 1000 hosts\n")
        out.append("| hosts | workload | serial | forks | wall s | cpu s | peak MB | rss MB | host-steps | "
                   "cpu/host-step ms | cmds/host | logins/host | machine cpu s | result |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        out.append(
            f"| {scale['hosts']} | {scale['workload']} | {scale.get('serial')} | {scale['forks']} | "
            f"{fmt(scale['wall_s'])} | {fmt(scale['cpu_s'])} | {fmt(scale['mem_peak_mb'], 1)} | "
            f"{fmt(scale['rss_peak_mb'], 1)} | {hs:.0f} | {fmt(1000 * scale['cpu_s'] / hs if hs else None, 3)} | "
            f"{fmt(scale['cmds_per_host'], 1)} | {fmt(scale['logins_per_host'], 2)} | {fmt(scale.get('machine_cpu_s'), 1)} | "
            f"{'ok' if scale['ok'] else 'FAILED: exit %s, %s hosts not done' % (scale['rc'], scale['bad_count'])} |")
        out.append("")
    out.append(f"Memory: `peak MB` is the peak of the tool's whole process tree from its cgroup ({method}); "
               "`rss-sum MB` the highest sampled sum of the tree's resident sets. CPU: user + sys of the whole "
               "tree (cgroup). `machine cpu s`: CPU the whole machine was busy during the run (/proc/stat): the tool, "
               "the simulated hosts on the same 2 cores (sshd, sessions, shims), and anything else running.")
    print("\n".join(out))

    # --- targets -------------------------------------------------------------------------
    print()
    verdicts = []

    def target(ok, text):
        verdicts.append(ok)
        print(f"{'PASS' if ok else 'MISS'}  {text}")

    def ratio(wl, n, tool):
        f, t = summary.get((wl, n, "fleetup")), summary.get((wl, n, tool))
        if not f or not t or not f["good"] or not t["good"]:
            return None
        return t["wall"] / f["wall"]

    r = ratio("upgrade", 20, "ansible")
    if r is not None:
        target(r >= 8, f"upgrade, 20 hosts: fleetup >= 8x faster than tuned Ansible (measured {r:.1f}x)")
    r = ratio("upgrade", 20, "pyinfra")
    if r is not None:
        target(1 / r <= 0.9, f"upgrade, 20 hosts: fleetup <= 0.9x pyinfra's wall time (measured {1 / r:.2f}x)")
    for n in sorted({n for (w, n) in groups if w == "trivial"}):
        r = ratio("trivial", n, "pyinfra")
        if r is not None:
            target(r >= 3, f"trivial steps, {n} hosts: fleetup >= 3x faster than pyinfra (measured {r:.1f}x)")
    for wl in ("upgrade", "trivial"):
        for n in sorted({n for (w, n) in groups if w == wl}):
            f = summary.get((wl, n, "fleetup"))
            if not f or not f["good"]:
                continue
            peers = [t for t in ("ansible", "pyinfra") if summary.get((wl, n, t), {}).get("good")]
            if peers:
                slower = [t for t in peers if summary[(wl, n, t)]["wall"] <= f["wall"]]
                parts = ", ".join("%s %.1fx" % (t, summary[(wl, n, t)]["wall"] / f["wall"]) for t in peers)
                target(not slower, f"{wl}, {n} hosts: fleetup faster than every peer ({parts})")
    if scale:
        target(scale["ok"] and scale["mem_peak_mb"] < 150,
               f"{scale['hosts']} hosts, serial {scale.get('serial')} forks {scale['forks']}: no error and peak "
               f"memory < 150 MB (measured {scale['mem_peak_mb']:.1f} MB cgroup, {scale['rss_peak_mb']:.1f} MB RSS; "
               f"{'ok' if scale['ok'] else 'FAILED'})")
    for (wl, n, tool), s in sorted(summary.items()):
        if s["good"] == 0:
            target(False, f"{tool} {wl} N={n}: no successful measurement")
    return 0 if all(verdicts) else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify")
    v.add_argument("--fleet", required=True)
    v.add_argument("--workload", required=True, choices=["upgrade", "trivial"])
    v.add_argument("--version", default="v4.66.1")
    v.add_argument("--sim", required=True)
    v.add_argument("--run", required=True)
    v.add_argument("--tool", default="?")
    v.add_argument("--forks", type=int, default=0)
    v.add_argument("--run-index", type=int, default=1)
    r = sub.add_parser("report")
    r.add_argument("--scale")
    r.add_argument("runs", nargs="*")
    a = ap.parse_args()
    return cmd_verify(a) if a.cmd == "verify" else cmd_report(a)


if __name__ == "__main__":
    sys.exit(main())
