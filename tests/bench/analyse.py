#!/usr/bin/python3
"""Arithmetic of tests/bench/run-overhead.sh.

  analyse.py mark FLEET_DIR OUT.json      byte offsets of every command log and sshd log
  analyse.py measure ARGS...              the figures of one run, as JSON (see --help)
  analyse.py brief RUN.json               one line about one run
  analyse.py report RUN.json...           the table (median of the runs of each case) and
                                          PASS/MISS per target

Only the standard library: it runs with /usr/bin/python3 as shipped.
"""

import argparse
import glob
import json
import math
import os
import re
import statistics
import sys

# The targets.
MAX_OVERHEAD_MS = 5.0  # per host-step, at forks 50
MAX_RSS_MB = 100.0

ACCEPTED = re.compile(r"Accepted publickey for (\S+) from (\S+) port (\d+)")


def fleet_logs(fleet_dir):
    """(host -> commands.log, sshd index -> (sshd.log, [hosts]))."""
    with open(os.path.join(fleet_dir, "fleet.json")) as f:
        fleet = json.load(f)
    hosts = {}
    for h in fleet["hosts"]:
        hosts[h["name"]] = os.path.join(h["host_dir"], "commands.log")
    sshds = {}
    for i, s in enumerate(fleet["sshds"]):
        served = [h["name"] for h in fleet["hosts"] if h.get("sshd") == s.get("index", i)]
        sshds[str(i)] = (s["log"], s.get("hosts") or served)
    return hosts, sshds


def size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def read_from(path, offset):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def sshd_cpu(fleet_dir):
    """CPU seconds of the fleet's sshds and of every process they have reaped: each
    connection's sshd, the session wrapper and the simulated commands (children's time
    reaches the listener's cutime/cstime once the connection has ended)."""
    with open(os.path.join(fleet_dir, "fleet.json")) as f:
        fleet = json.load(f)
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for s in fleet["sshds"]:
        try:
            with open(f"/proc/{s['pid']}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the ")": state is fields[0]; utime, stime, cutime, cstime are 14-17 of stat.
        total += sum(int(x) for x in fields[11:15])
    return total / tick


def fleet_cpu(fleet_dir):
    """CPU seconds of the whole simulated fleet: its sshds as `sshd_cpu` counts them, and
    its supervisor with what it reaped (it is the subreaper of the one-shot containers'
    detached processes, which no sshd reaps)."""
    with open(os.path.join(fleet_dir, "fleet.json")) as f:
        fleet = json.load(f)
    tick = os.sysconf("SC_CLK_TCK")
    own = 0
    try:
        with open(f"/proc/{fleet['supervisor_pid']}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        own = sum(int(x) for x in fields[11:15])
    except (OSError, KeyError):
        pass
    return sshd_cpu(fleet_dir) + own / tick


def cmd_mark(args):
    hosts, sshds = fleet_logs(args.fleet)
    mark = {
        "hosts": {name: size(p) for name, p in hosts.items()},
        "sshds": {i: size(log) for i, (log, _) in sshds.items()},
        "sshd_cpu_s": sshd_cpu(args.fleet),
    }
    with open(args.out, "w") as f:
        json.dump(mark, f)


def parse_time_v(path):
    """The figures of GNU time -v that we use."""
    want = {
        "User time (seconds)": "user_s",
        "System time (seconds)": "sys_s",
        "Maximum resident set size (kbytes)": "max_rss_kb",
        "Exit status": "exit",
        "Voluntary context switches": "voluntary_cs",
        "Involuntary context switches": "involuntary_cs",
    }
    out = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.strip().rpartition(": ")
            if key in want:
                out[want[key]] = float(value)
    return out


def cpu_busy(stat_path):
    """(busy, total) jiffies of the machine from a copy of /proc/stat's first line."""
    with open(stat_path) as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return total - idle, total


def cmd_measure(a):
    hosts, sshds = fleet_logs(a.fleet)
    with open(a.mark) as f:
        mark = json.load(f)
    t0, t1 = a.t0, a.t1
    wall = t1 - t0

    # Remote command time, from the hosts' own command logs: every `session` record
    # (one SSH exec channel, timed by the ForceCommand wrapper around /bin/sh -c).
    remote = {}  # host -> sum of session durations
    sessions = {}  # host -> number of sessions
    incomplete = 0
    gaps = []  # per host, end of one session to the start of the next
    first_start = {}  # per host, its first session's start
    last_end = {}  # per host, its last session's end
    for name in sorted(hosts):
        text = read_from(hosts[name], mark["hosts"].get(name, 0))
        starts, ends = {}, {}
        for line in text.splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("kind") != "session":
                continue
            (starts if r["ev"] == "start" else ends)[r["id"]] = r["t"]
        if not starts:
            continue
        spans = sorted(
            (starts[i], ends[i]) for i in starts if i in ends
        )
        incomplete += len(starts) - len(spans)
        remote[name] = sum(e - s for s, e in spans)
        sessions[name] = len(starts)
        for (_, e), (s, _) in zip(spans, spans[1:]):
            gaps.append(s - e)
        if spans:
            first_start[name] = spans[0][0]
            last_end[name] = spans[-1][1]

    # SSH logins: every sshd logs one "Accepted publickey" per authenticated connection.
    # The log does not name the server port, so logins are counted per sshd and checked
    # against the hosts of that sshd that ran commands: as every such host needs at least
    # one connection, logins == hosts means exactly one connection per host.
    logins = 0
    extra = 0  # connections beyond one per active host, summed over the sshds
    for i, (log, served) in sshds.items():
        n = len(ACCEPTED.findall(read_from(log, mark["sshds"].get(i, 0))))
        active = sum(1 for h in served if h in remote)
        logins += n
        extra += max(0, n - active)

    # fleetup's own account of the run: its JSON events.
    outcomes = {}
    host_started, host_finished = {}, {}
    batches = 0
    exit_code = None
    run_ms = None
    with open(a.events) as f:
        for line in f:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            ev = e.get("event")
            if ev == "host_started":
                host_started[e["host"]] = e["at_ms"] / 1000.0
            elif ev == "host_finished":
                outcomes[e["host"]] = e.get("outcome")
                host_finished[e["host"]] = e["at_ms"] / 1000.0
            elif ev == "batch_started":
                batches += 1
            elif ev == "run_finished":
                exit_code = e.get("exit_code")
                run_ms = e.get("duration_ms")
    not_ok = sorted(h for h, o in outcomes.items() if o not in ("ok", "skipped"))
    errors = len(not_ok) + max(0, a.hosts - len(outcomes))

    tv = parse_time_v(a.time)
    cpu = tv.get("user_s", 0.0) + tv.get("sys_s", 0.0)
    host_steps = a.hosts * a.steps
    waves = math.ceil(a.hosts / min(a.forks, a.hosts))
    mean_remote = statistics.mean(remote.values()) if remote else 0.0
    critical = waves * mean_remote
    overhead = wall - critical

    # Phases, from fleetup's event stamps (ms) and the hosts' command logs (us).
    connect = [first_start[h] - host_started[h] for h in first_start if h in host_started]
    close = [host_finished[h] - last_end[h] for h in last_end if h in host_finished]
    startup = min(first_start.values()) - t0 if first_start else None
    teardown = t1 - max(last_end.values()) if last_end else None
    p95 = lambda xs: sorted(xs)[int(0.95 * (len(xs) - 1))] if xs else None
    ms = lambda x: None if x is None else 1000.0 * x
    server_cpu = sshd_cpu(a.fleet) - mark.get("sshd_cpu_s", 0.0)

    b0, tot0 = cpu_busy(a.stat0)
    b1, tot1 = cpu_busy(a.stat1)
    machine_busy = (b1 - b0) / (tot1 - tot0) if tot1 > tot0 else float("nan")

    result = {
        "case": a.case,
        "hosts": a.hosts,
        "forks": a.forks,
        "serial": a.serial,
        "steps": a.steps,
        "host_steps": host_steps,
        "waves": waves,
        "wall_s": wall,
        "engine_s": (run_ms or 0) / 1000.0,
        "cpu_s": cpu,
        "user_s": tv.get("user_s"),
        "sys_s": tv.get("sys_s"),
        "max_rss_mb": tv.get("max_rss_kb", 0) / 1024.0,
        "voluntary_cs": tv.get("voluntary_cs"),
        "involuntary_cs": tv.get("involuntary_cs"),
        "exit": exit_code if exit_code is not None else tv.get("exit"),
        "batches": batches,
        "mean_remote_s": mean_remote,
        "critical_remote_s": critical,
        "overhead_ms_per_host_step": 1000.0 * overhead / host_steps,
        "latency_ms_per_step": 1000.0 * overhead / (waves * a.steps),
        "cpu_ms_per_host_step": 1000.0 * cpu / host_steps,
        "session_ms_mean": 1000.0 * sum(remote.values()) / max(1, sum(sessions.values())),
        "gap_ms_mean": 1000.0 * statistics.mean(gaps) if gaps else None,
        "gap_ms_p95": 1000.0 * sorted(gaps)[int(0.95 * (len(gaps) - 1))] if gaps else None,
        "startup_ms": ms(startup),
        "teardown_ms": ms(teardown),
        "connect_ms_mean": ms(statistics.mean(connect)) if connect else None,
        "connect_ms_p95": ms(p95(connect)),
        "close_ms_mean": ms(statistics.mean(close)) if close else None,
        "close_ms_p95": ms(p95(close)),
        "server_cpu_s": server_cpu,
        "server_cpu_ms_per_host_step": 1000.0 * server_cpu / host_steps,
        "sessions": sum(sessions.values()),
        "sessions_expected": host_steps,
        "incomplete_sessions": incomplete,
        "hosts_with_sessions": len(remote),
        "logins": logins,
        "extra_connections": extra,
        "errors": errors,
        "not_ok": not_ok[:10],
        "machine_cpu_busy": machine_busy,
    }
    json.dump(result, sys.stdout)
    print()


DEFINITIONS = """\
Definitions (per run; the table shows the median of the runs of each case):
  wall        elapsed time of the fleetup process (start to exit, measured around it)
  cpu         controller CPU: user + sys of the fleetup process (GNU time -v)
  rss         controller peak resident memory (GNU time -v, maximum resident set size)
  host-steps  S = hosts x steps
  remote      R_h = sum over host h's SSH sessions of (end - start) in its commands.log:
              the time its commands took on the host (inside sshd's ForceCommand wrapper)
  critical    C = ceil(hosts / min(forks, hosts)) x mean_h(R_h): the wall time of a
              controller, SSH and sshd that cost nothing (each of the forks slots runs
              its hosts' commands back to back)
  ovh/hs      overhead per host-step = (wall - C) / S          (target < 5 ms at forks 50)
  lat/step    the same overhead per step on the critical path = (wall - C) / (waves x steps):
              what each step waits beyond its command (controller + SSH round trip +
              sshd's fork of the session)
  cpu/hs      controller CPU per host-step = cpu / S
  gap         mean time on a host between the end of one command and the start of the next
  fleet cpu/hs  CPU of the test fleet per host-step: the sshds, each connection's sshd
              processes, the session wrappers and the commands (cutime+cstime of the
              listening sshds); on this machine it shares the cores with the controller
  connect     (runs list) a host's host_started event to its first command's start:
              TCP + SSH handshake + auth + the first channel
  close       (runs list) a host's last command's end to its host_finished event
  conn/host   SSH logins ("Accepted publickey" in the sshd logs) / hosts that ran commands;
              1.00 with 0 extra means exactly one connection per host (every host needs one)
  errors      hosts whose host_finished outcome is not ok/skipped, plus hosts never finished
  machine     share of the machine's CPU busy during the run (all processes: fleetup, sshd,
              the simulated hosts, and anything else running on this shared machine)"""


def cmd_brief(a):
    with open(a.run) as f:
        r = json.load(f)
    print(
        f"wall {r['wall_s']:.2f}s cpu {r['cpu_s']:.2f}s rss {r['max_rss_mb']:.1f}MB "
        f"ovh {r['overhead_ms_per_host_step']:.2f}ms/host-step errors {r['errors']} "
        f"logins {r['logins']} machine busy {r['machine_cpu_busy']:.0%}"
    )


def median(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def cmd_report(a):
    runs = []
    for p in a.runs:
        with open(p) as f:
            runs.append(json.load(f))
    cases = []
    for r in runs:
        if r["case"] not in cases:
            cases.append(r["case"])
    by_case = {c: [r for r in runs if r["case"] == c] for c in cases}

    cols = [
        ("case", "case", "{}"),
        ("runs", None, "{}"),
        ("wall s", "wall_s", "{:.2f}"),
        ("cpu s", "cpu_s", "{:.2f}"),
        ("rss MB", "max_rss_mb", "{:.1f}"),
        ("host-steps", "host_steps", "{}"),
        ("C s", "critical_remote_s", "{:.2f}"),
        ("ovh/hs ms", "overhead_ms_per_host_step", "{:.2f}"),
        ("lat/step ms", "latency_ms_per_step", "{:.1f}"),
        ("cpu/hs ms", "cpu_ms_per_host_step", "{:.2f}"),
        ("gap ms", "gap_ms_mean", "{:.1f}"),
        ("fleet cpu/hs ms", "server_cpu_ms_per_host_step", "{:.2f}"),
        ("conn/host", None, "{}"),
        ("errors", "errors", "{}"),
        ("machine", "machine_cpu_busy", "{:.0%}"),
    ]
    rows = []
    for c in cases:
        rs = by_case[c]
        row = []
        for title, key, fmt in cols:
            if title == "runs":
                row.append(str(len(rs)))
            elif title == "conn/host":
                worst = max(rs, key=lambda r: (r["extra_connections"], r["logins"]))
                ratio = worst["logins"] / max(1, worst["hosts_with_sessions"])
                row.append(f"{ratio:.2f} (+{worst['extra_connections']})")
            elif title == "errors":
                row.append(str(max(r["errors"] for r in rs)))  # the worst run
            elif key == "case":
                row.append(c)
            else:
                v = median(rs, key)
                row.append("-" if v is None else fmt.format(v))
        rows.append(row)
    widths = [max(len(t), *(len(r[i]) for r in rows)) for i, (t, _, _) in enumerate(cols)]
    line = lambda cells: "| " + " | ".join(s.ljust(w) for s, w in zip(cells, widths)) + " |"
    print(line([t for t, _, _ in cols]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    print()

    # Targets.
    results = []
    conn_ok = all(
        r["extra_connections"] == 0 and r["logins"] == r["hosts_with_sessions"] == r["hosts"]
        for r in runs
    )
    worst = max(r["logins"] / max(1, r["hosts"]) for r in runs)
    results.append(("one connection per host for the whole run", conn_ok,
                    f"worst run: {worst:.2f} logins per host"))
    f50 = [c for c in cases if by_case[c][0]["forks"] == 50]
    if f50:
        vals = {c: median(by_case[c], "overhead_ms_per_host_step") for c in f50}
        ok = all(v < MAX_OVERHEAD_MS for v in vals.values())
        detail = ", ".join(f"{c}: {v:.2f} ms" for c, v in vals.items())
        results.append((f"overhead < {MAX_OVERHEAD_MS:g} ms per host-step at forks 50", ok, detail))
    one_batch = [c for c in cases if by_case[c][0]["hosts"] == 200 and by_case[c][0]["forks"] == 200]
    if one_batch:
        rs = [r for c in one_batch for r in by_case[c]]
        ok = all(r["errors"] == 0 and r["batches"] == 1 and r["exit"] == 0 for r in rs)
        detail = f"{len(rs)} runs: 0 errors, 1 batch, exit 0" if ok else ", ".join(
            f"errors {r['errors']} in {r['batches']} batch(es), exit {r['exit']}" for r in rs
        )
        results.append(("200 hosts in one batch at forks 200 without errors", ok, detail))
    peak = max(r["max_rss_mb"] for r in runs)
    results.append((f"peak memory < {MAX_RSS_MB:g} MB", peak < MAX_RSS_MB,
                    f"highest of all runs: {peak:.1f} MB"))
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'MISS'}  {name}  ({detail})")
    print()
    # Every run, for the record.
    print("runs:")
    for r in runs:
        print(
            f"  {r['case']}: wall {r['wall_s']:.2f}s (engine {r['engine_s']:.2f}s), "
            f"cpu {r['cpu_s']:.2f}s (user {r['user_s']:.2f} sys {r['sys_s']:.2f}), "
            f"rss {r['max_rss_mb']:.1f} MB, C {r['critical_remote_s']:.2f}s, "
            f"session {r['session_ms_mean']:.1f} ms, gap {r['gap_ms_mean'] or 0:.1f} ms "
            f"(p95 {r['gap_ms_p95'] or 0:.1f}), first command {r['startup_ms'] or 0:.0f} ms after start, "
            f"exit {r['teardown_ms'] or 0:.0f} ms after the last, host start to first command "
            f"{r['connect_ms_mean'] or 0:.0f} ms (p95 {r['connect_ms_p95'] or 0:.0f}), last command to host "
            f"finished {r['close_ms_mean'] or 0:.0f} ms (p95 {r['close_ms_p95'] or 0:.0f}), "
            f"fleet CPU {r['server_cpu_s']:.2f}s ({r['server_cpu_ms_per_host_step']:.2f} ms/host-step), "
            f"sessions {r['sessions']}/{r['sessions_expected']}, logins {r['logins']}, "
            f"errors {r['errors']}{' ' + ','.join(r['not_ok']) if r['not_ok'] else ''}, "
            f"machine busy {r['machine_cpu_busy']:.0%}"
        )
    print()
    print(DEFINITIONS)
    return 0 if all(ok for _, ok, _ in results) else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("mark")
    m.add_argument("fleet")
    m.add_argument("out")
    s = sub.add_parser("measure")
    s.add_argument("--fleet", required=True)
    s.add_argument("--mark", required=True)
    s.add_argument("--events", required=True, help="fleetup's --output json stdout")
    s.add_argument("--time", required=True, help="GNU time -v output file")
    s.add_argument("--stat0", required=True, help="/proc/stat before")
    s.add_argument("--stat1", required=True, help="/proc/stat after")
    s.add_argument("--t0", type=float, required=True, help="unix time before starting fleetup")
    s.add_argument("--t1", type=float, required=True, help="unix time after it exited")
    s.add_argument("--case", required=True)
    s.add_argument("--hosts", type=int, required=True)
    s.add_argument("--forks", type=int, required=True)
    s.add_argument("--serial", default="all")
    s.add_argument("--steps", type=int, required=True)
    b = sub.add_parser("brief", help="one line about one run")
    b.add_argument("run")
    r = sub.add_parser("report")
    r.add_argument("runs", nargs="+")
    a = p.parse_args()
    if a.cmd == "mark":
        cmd_mark(a)
    elif a.cmd == "measure":
        cmd_measure(a)
    elif a.cmd == "brief":
        cmd_brief(a)
    else:
        sys.exit(cmd_report(a))


if __name__ == "__main__":
    main()
