"""Splits heaptrack's peak heap of a `fleetup run` by owner (tests/bench/memory.sh).

Each line of --stacks is `frame;frame;...;frame BYTES` (heaptrack_print -F, cost type
peak): the bytes a call stack held at the run's peak. A stack belongs to the first owner
whose pattern is found in it (its frames joined by `;`, a frame's start matched by
`(^|;)`). Frames name a function and its file only (`flush (session.rs)`), so the owners
are told apart by the files and functions that hold memory for them.
"""

import argparse
import json
import re

OWNERS = [
    # What the templates keep (src/template/memo.rs): rendered values and content ids.
    # First: a value rendered during a host's pre-flight has the pre-flight in its stack.
    ("templates' memo (rendered values kept, content ids)",
     re.compile(r"\((memo|resolve)\.rs\)")),
    # The SSH sessions: opened in connect.rs; russh's session task (spawned), its buffers
    # and the tokio channels between it and its handle are allocated by code that names
    # russh's or tokio's files.
    ("SSH sessions (russh: session task, buffers, channels)",
     re.compile(r"\(connect\.rs\)|\(sshbuffer\.rs\)|russh|\(kex\.rs\)|"
                r"(^|;)(eof|flush|data|exec|channel_open_session|handle_msg) \(session\.rs\)|"
                r"\(encrypted\.rs\)|\(cipher|(^|;)new<> \(block\.rs\)|"
                r"(^|;)spawn<> \(spawn\.rs\)")),
    # Made (and kept) there; `onto` lays them over a host in flight's variables. What
    # they hold as it was registered (up to 16 MB of texts, src/transport/kept.rs) was
    # copied in the pre-flight as its step registered it: that copy is theirs, not the
    # pre-flight's (inlined, the copy's frame stands next to check.rs's, on either side).
    ("pre-flight findings held for the host's turn",
     re.compile(r"(^|;)(new|deflate|keep<>) \(kept\.rs\)|"
                r"\(check\.rs\);clone \(registered\.rs\)|"
                r"(^|;)clone \(registered\.rs\);[^;]*\(check\.rs\)")),
    ("hosts' variables (playbook, inventory, -e)",
     re.compile(r"(^|;)host_in_play |\(inventory\.rs\)|(^|;)prepare \(mod\.rs\)")),
    ("hosts in flight (steps, templates, their output)",
     re.compile(r"\((host_run|step|verdict|rollout|recheck|host_lock|opening|check)\.rs\)")),
]
# Which of OWNERS are counted per host in flight rather than per host: the memo's room
# grows with the hosts in flight (Memo::make_room_for).
IN_FLIGHT = (0, 4)

def owner(frames):
    stack = ";".join(frames)
    for name, pattern in OWNERS:
        if pattern.search(stack):
            return name
    return "other"


def outcomes(events):
    """The hosts' outcomes of a run's JSON events."""
    found = {}
    for line in open(events):
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") == "host_finished":
            found[e["outcome"]] = found.get(e["outcome"], 0) + 1
    return found


def status_ok(table):
    """The hosts `fleetup status` read: rows of its table whose pre-flight is ok."""
    return sum(1 for line in open(table) if line.split()[1:2] == ["ok"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stacks", required=True)
    ap.add_argument("--time", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--hosts", type=int, required=True)
    ap.add_argument("--serial", required=True)
    ap.add_argument("--workload", default="upgrade")
    a = ap.parse_args()

    split, total = {}, 0
    for line in open(a.stacks):
        stack, _, size = line.rstrip("\n").rpartition(" ")
        if not size.isdigit():
            continue
        who = owner(stack.split(";"))
        split[who] = split.get(who, 0) + int(size)
        total += int(size)

    rss_kb = None
    for line in open(a.time):
        if "Maximum resident set size" in line:
            rss_kb = int(line.rsplit(":", 1)[1])
    mb = lambda b: b / 1e6
    if a.workload == "status":
        print(f"status of {a.hosts} hosts, {a.serial} at once: {status_ok(a.events)} "
              "read ok")
    else:
        print(f"{a.hosts} hosts, --serial {a.serial}: every host's connection held from "
              f"the pre-flight to its turn; outcomes {outcomes(a.events)}")
    print(f"peak RSS (GNU time): {rss_kb / 1000:.1f} MB" if rss_kb else "peak RSS: ?")
    print(f"peak heap (heaptrack): {mb(total):.1f} MB")
    # The hosts in flight are a batch (at most); everything else is held for every host.
    in_flight = min(a.hosts, int(a.serial)) if a.serial.isdigit() else a.hosts
    print("| owner | MB at the peak | kB per host |")
    print("|---|---|---|")
    for i, (name, _) in enumerate(OWNERS + [("other", None)]):
        b = split.get(name, 0)
        per = in_flight if i in IN_FLIGHT else a.hosts
        print(f"| {name} | {mb(b):.1f} | {b / per / 1000:.1f} (of {per}) |")


if __name__ == "__main__":
    main()
