#!/usr/bin/python3
"""Arithmetic of tests/bench/peers.sh (standard library only).

  analyse.py fleet-cpu --fleet DIR
      prints the fleet's CPU seconds so far (before a run: `verify --fleet-cpu-before`).
  analyse.py verify --fleet DIR --workload upgrade|trivial|status --version V --sim FLEET_SIM \
                    --run RUN.json [--tool T --hosts N --forks F --run-index R]
                    [--fleet-cpu-before S]
      checks the fleet after one run and adds to RUN.json (written by measure.py): ok
      (every host upgraded and healthy, or ran its 14 trivial commands, or answered the
      status, and the tool exited 0), the hosts that were not, the SSH commands per host
      (from the hosts' command logs), the logins per host (sshd logs), and the fleet's CPU
      during the run (its sshds, every session and command they reaped, and the fleet's
      supervisor, which reaps the one-shot containers' processes).
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
        if a.workload == "status":
            if n < 1:
                bad.append(f"{name}: never asked")
            continue
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
        fleet_cpu_s=bench_analyse().fleet_cpu(a.fleet) - a.fleet_cpu_before,
        cores=os.cpu_count(),
    )
    with open(a.run, "w") as f:
        json.dump(run, f)
    status = "ok" if run["ok"] else f"FAILED (exit {run.get('rc')}, {len(bad)} hosts not done: {'; '.join(bad[:3])})"
    print(f"{a.tool} {a.workload} N={nh} run {a.run_index}: {status}; wall {run['wall_s']:.2f} s, "
          f"cpu {run['cpu_s']:.2f} s, mem {run['mem_peak_mb']:.1f} MB (rss sum {run['rss_peak_mb']:.1f}), "
          f"{run['cmds_per_host']:.1f} cmds/host, {run['logins_per_host']:.2f} logins/host, "
          f"fleet cpu {run['fleet_cpu_s']:.2f} s, machine cpu {run.get('machine_cpu_s', float('nan')):.2f} s")
    return 0


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt(x, d=2):
    if x is None or x != x:
        return "–"
    return f"{x:.{d}f}"


def playbook_steps(path):
    """(pre-flight steps, steps) of a fleetup playbook: its list items under `preflight:`
    and `steps:` (the shipped playbooks' layout; standard library only, no YAML parser)."""
    counts = {"preflight": 0, "steps": 0}
    section = None
    with open(path) as f:
        for line in f:
            top = re.match(r"^([a-z_]+):", line)
            if top:
                section = top.group(1)
            elif section in counts and re.match(r"^  - name:", line):
                counts[section] += 1
    return counts["preflight"], counts["steps"]


def summarise(runs):
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
                "logins_max": max([r["logins_per_host"] for r in good], default=float("nan")),
                "cmds_max": max([r["cmds_per_host"] for r in good], default=float("nan")),
                "step_ms": med([1000 * r["cpu_s"] / (r["hosts"] * r["cmds_per_host"])
                                for r in good if r["cmds_per_host"]]),
                "procs": max([r.get("procs_max", 0) for r in good], default=0),
                "forks": rs[0].get("forks"),
                "failed": [f"run {r['run_index']}: exit {r['rc']}, {r['bad_count']} hosts not done"
                           for r in rs if not r["ok"]],
            }
    return groups, summary


def tables(groups, summary):
    out = []
    for wl in ("upgrade", "trivial"):
        sizes = sorted({n for (w, n) in groups if w == wl})
        if not sizes:
            continue
        title = ("the upgrade (playbooks/simplelogin-upgrade.yml and its equivalents)"
                 if wl == "upgrade" else "14 trivial steps (`true`) per host")
        out.append(f"### Workload: {title}\n")
        out.append("| hosts | tool | forks | wall s | × fleetup | cpu s | × fleetup | cpu/step ms | fleet cpu s | "
                   "peak MB | rss-sum MB | cmds/host | logins/host | machine cpu s | good runs |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
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
                    f"| {n} | {tool} | {forks} | {fmt(s['wall'])} | {fmt(rw, 2)} | {fmt(s['cpu'])} | {fmt(rc, 1)} | "
                    f"{fmt(s['step_ms'], 3)} | {fmt(s['fleet'])} | "
                    f"{fmt(s['mem'], 1)} | {fmt(s['rss'], 1)} | {fmt(s['cmds'], 1)} | {fmt(s['logins'], 2)} | "
                    f"{fmt(s['machine'], 2)} | {s['good']}/{s['runs']} |")
        out.append("")
        for (w, n, tool), s in sorted(summary.items()):
            if w == wl and s["failed"]:
                out.append(f"- {tool} N={n}: failed measurements (not in the medians): {'; '.join(s['failed'])}")
        out.append("")
    return out


def scale_rss(sc):
    """fleetup's peak RSS in a scale run: the kernel's exact figure when the run has it (a
    run measured before it did has the highest sampled one)."""
    return sc.get("max_rss_mb", sc["rss_peak_mb"])


def scale_table(scales):
    out = ["### Scale: fleetup alone\n",
           "| hosts | workload | serial | forks | wall s | fleet cpu s | floor s | wall / floor | cpu s | "
           "cpu/step ms | peak MB | rss MB | cmds/host | logins/host | machine cpu s | result |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for sc in scales:
        hs = sc["hosts"] * sc["cmds_per_host"]
        floor = sc["fleet_cpu_s"] / sc["cores"]
        out.append(
            f"| {sc['hosts']} | {sc['workload']} | {sc.get('serial', '–')} | {sc['forks']} | "
            f"{fmt(sc['wall_s'])} | {fmt(sc['fleet_cpu_s'])} | {fmt(floor)} | {fmt(sc['wall_s'] / floor if floor else None)} | "
            f"{fmt(sc['cpu_s'])} | {fmt(1000 * sc['cpu_s'] / hs if hs else None, 3)} | {fmt(sc['mem_peak_mb'], 1)} | "
            f"{fmt(scale_rss(sc), 1)} | {fmt(sc['cmds_per_host'], 1)} | {fmt(sc['logins_per_host'], 2)} | "
            f"{fmt(sc.get('machine_cpu_s'), 1)} | "
            f"{'ok' if sc['ok'] else 'FAILED: exit %s, %s hosts not done' % (sc['rc'], sc['bad_count'])} |")
    out.append("")
    out.append("`floor s`: the fleet's own CPU during the run (its sshds, sessions and simulated commands) "
               "divided by the cores it shares with the controller: no tool can finish sooner.")
    out.append("")
    return out


def cmd_report(a):
    runs = []
    for p in a.runs:
        with open(p) as f:
            runs.append(json.load(f))
    groups, summary = summarise(runs)
    scales = []
    for p in a.scale:
        with open(p) as f:
            scales.append(json.load(f))
    method = runs[0].get("method", "?") if runs else "?"
    out = tables(groups, summary)
    if scales:
        out += scale_table(scales)
    out.append(f"Memory: `peak MB` is the peak of the tool's whole process tree from its cgroup ({method}); "
               "`rss-sum MB` the highest sampled sum of the tree's resident sets; the scale runs' `rss MB` is "
               "fleetup's own peak resident set, from the kernel (wait4). CPU: `cpu s` is user + sys of the "
               "tool's whole tree (cgroup), the controller's share; `cpu/step ms` that per host and command; "
               "`fleet cpu s` the simulated hosts' (sshd, sessions, shims) during the run. `machine cpu s`: CPU the "
               "whole machine was busy during the run (/proc/stat): both, and anything else running. `cmds/host` and "
               "`logins/host` come from the hosts' own command logs and sshd logs.")
    print("\n".join(out))
    print()
    verdicts = []

    def target(ok, text):
        verdicts.append(ok)
        print(f"{'PASS' if ok else 'MISS'}  {text}")

    targets_issue_8(target, groups, summary, scales)
    print()
    targets_issue_19(target, groups, summary, scales)
    for (wl, n, tool), s in sorted(summary.items()):
        if s["good"] == 0:
            target(False, f"{tool} {wl} N={n}: no successful measurement")
    return 0 if all(verdicts) else 1


def ratio(summary, wl, n, tool):
    """The tool's median wall time over fleetup's."""
    f, t = summary.get((wl, n, "fleetup")), summary.get((wl, n, tool))
    if not f or not t or not f["good"] or not t["good"]:
        return None
    return t["wall"] / f["wall"]


def targets_issue_8(target, groups, summary, scales):
    print("Issue 8:")
    r = ratio(summary, "upgrade", 20, "ansible")
    if r is not None:
        target(r >= 8, f"upgrade, 20 hosts: fleetup >= 8x faster than tuned Ansible (measured {r:.1f}x)")
    for n in sorted({n for (w, n) in groups if w == "trivial"}):
        r = ratio(summary, "trivial", n, "pyinfra")
        if r is not None:
            target(r >= 3, f"trivial steps, {n} hosts: fleetup >= 3x faster than pyinfra (measured {r:.1f}x)")
    for sc in scales:
        if sc["workload"] == "upgrade":
            target(sc["ok"] and sc["mem_peak_mb"] < 150,
                   f"{sc['hosts']} hosts, serial {sc.get('serial')} forks {sc['forks']}: no error and peak "
                   f"memory < 150 MB (measured {sc['mem_peak_mb']:.1f} MB)")


def targets_issue_19(target, groups, summary, scales):
    here = os.path.dirname(os.path.abspath(__file__))
    preflight, steps = playbook_steps(os.path.join(here, "..", "..", "..", "playbooks", "simplelogin-upgrade.yml"))
    print(f"Issue 19 (the shipped upgrade: {steps} steps and a pre-flight of {preflight}):")
    for wl, most in (("upgrade", 0.9), ("trivial", 0.5)):
        for n in sorted({n for (w, n) in groups if w == wl}):
            r = ratio(summary, wl, n, "pyinfra")
            if r is not None:
                target(1 / r <= most, f"{wl}, {n} hosts: fleetup's wall <= {most}x pyinfra's (measured {1 / r:.2f}x)")
    for (wl, n, tool), s in sorted(summary.items()):
        if tool != "fleetup" or not s["good"]:
            continue
        target(s["logins_max"] == 1, f"{wl}, {n} hosts: exactly 1 login per host (worst run {s['logins_max']:.2f})")
        allowed = preflight + steps if wl == "upgrade" else 14
        target(s["cmds_max"] <= allowed,
               f"{wl}, {n} hosts: commands per host <= {allowed} (measured {s['cmds_max']:.1f})")
        target(s["step_ms"] <= 0.25, f"{wl}, {n} hosts: controller CPU <= 0.25 ms per host-step "
                                     f"(measured {s['step_ms']:.3f} ms)")
        p = summary.get((wl, n, "pyinfra"))
        if p and p["good"]:
            target(s["cpu"] <= p["cpu"] / 5, f"{wl}, {n} hosts: controller CPU <= 1/5 of pyinfra's whole tree "
                                             f"(measured {s['cpu'] / p['cpu']:.2f}x)")
    for sc in scales:
        floor = sc["fleet_cpu_s"] / sc["cores"]
        target(sc["ok"] and sc["wall_s"] <= 1.15 * floor,
               f"{sc['hosts']} hosts, {sc['workload']}: wall within 15 % of the fleet's floor "
               f"({sc['wall_s']:.1f} s against {floor:.1f} s: {sc['wall_s'] / floor:.2f}x)")
        # The issue's target is fleetup's peak RSS; the cgroup's peak also counts the page
        # cache of the journal and host logs it wrote and its sockets' kernel buffers.
        target(scale_rss(sc) <= 80, f"{sc['hosts']} hosts, {sc['workload']}: peak RSS <= 80 MB "
                                    f"(measured {scale_rss(sc):.1f} MB; the cgroup's peak "
                                    f"{sc['mem_peak_mb']:.1f} MB)")
        if sc["workload"] == "upgrade":
            target(sc["logins_per_host"] == 1,
                   f"{sc['hosts']} hosts, upgrade: 1 login per host (measured {sc['logins_per_host']:.2f})")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify")
    v.add_argument("--fleet", required=True)
    v.add_argument("--workload", required=True, choices=["upgrade", "trivial", "status"])
    v.add_argument("--fleet-cpu-before", type=float, default=0.0)
    v.add_argument("--version", default="v4.66.1")
    v.add_argument("--sim", required=True)
    v.add_argument("--run", required=True)
    v.add_argument("--tool", default="?")
    v.add_argument("--forks", type=int, default=0)
    v.add_argument("--run-index", type=int, default=1)
    r = sub.add_parser("report")
    r.add_argument("--scale", action="append", default=[])
    r.add_argument("runs", nargs="*")
    c = sub.add_parser("fleet-cpu")
    c.add_argument("--fleet", required=True)
    a = ap.parse_args()
    if a.cmd == "fleet-cpu":
        print(f"{bench_analyse().fleet_cpu(a.fleet):.3f}")
        return 0
    return cmd_verify(a) if a.cmd == "verify" else cmd_report(a)


if __name__ == "__main__":
    sys.exit(main())
