#!/usr/bin/env python3
"""Where the controller's CPU went, by part: reads `perf script` of a `perf record -g` run
on stdin and counts each sample once, under the first part its stack holds (in the order
below, leaf to root as perf prints them). Call stacks need a build with frame pointers
(RUSTFLAGS="-C force-frame-pointers=yes"): without them most samples end in "other".

Usage: perf script -i run.perf | tests/bench/cpu_split.py
"""
import collections
import re
import sys

# The first that matches a sample's stack takes it: the more specific parts come first.
PARTS = [
    ("the journal's fsyncs", r"fdatasync"),
    ("the journal", r"fleetup::journal::"),
    ("templates", r"fleetup::template|minijinja"),
    ("validation before the run", r"fleetup::play::validate|fleetup::play::prepare"),
    ("events and views", r"fleetup::ui|fleetup::engine::emitter|fleetup::events|serde_json::ser"),
    ("russh: ciphers and hashes", r"aws_lc|chacha|poly1305|curve25519|sha2::|ed25519|ring::"),
    ("russh: key exchange and authentication", r"russh::.*(kex|auth|negotiat)"),
    ("kernel: TCP sends", r"__send|sendto|tcp_sendmsg"),
    ("kernel: TCP receives", r"recv|tcp_recvmsg"),
    ("tokio: epoll and parking", r"epoll|park"),
    ("russh: the rest", r"russh"),
    ("known_hosts", r"known_hosts"),
    ("fleetup's SSH layer", r"fleetup::ssh::|fleetup::connect::"),
    ("the engine", r"fleetup::engine"),
    ("tokio: the rest", r"tokio"),
    ("allocator", r"malloc|free|rallocx|sdallocx"),
]


def main():
    counts = collections.Counter()
    total = 0
    for block in sys.stdin.read().split("\n\n"):
        frames = block.strip().split("\n")[1:]
        if not frames:
            continue
        total += 1
        stack = " | ".join(frames)
        part = next((name for name, pattern in PARTS if re.search(pattern, stack)), "other")
        counts[part] += 1
    if not total:
        sys.exit("no samples on stdin")
    print(f"{total} samples")
    for part, n in counts.most_common():
        print(f"{100 * n / total:5.1f} %  {part}")


if __name__ == "__main__":
    main()
