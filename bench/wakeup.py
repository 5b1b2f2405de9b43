#!/usr/bin/env python3
"""Round-trip latency of a wakeup between two processes, on one CPU and across CPUs.

Every synchronous FUSE request is such a round trip: the application wakes a daemon
thread and sleeps, and the daemon's reply wakes it again. This measures the same
pattern without FUSE (two processes bouncing a byte over two pipes), so that the
latency floor of the machine can be told apart from the cost of warabifs itself.

    python3 bench/wakeup.py            # 20,000 round trips per placement
    python3 bench/wakeup.py --rounds 50000

Placements: both processes pinned to CPU 0; pinned to CPUs 0 and 1; not pinned (where
the scheduler puts them, which is what a FUSE daemon and its callers get).
"""

import argparse
import os
import time


def bounce(rounds: int, parent_cpu: int | None, child_cpu: int | None) -> float:
    """Returns microseconds per round trip."""
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        if child_cpu is not None:
            os.sched_setaffinity(0, {child_cpu})
        for _ in range(rounds):
            os.read(to_child_r, 1)
            os.write(to_parent_w, b"x")
        os._exit(0)
    if parent_cpu is not None:
        os.sched_setaffinity(0, {parent_cpu})
    start = time.perf_counter()
    for _ in range(rounds):
        os.write(to_child_w, b"x")
        os.read(to_parent_r, 1)
    elapsed = time.perf_counter() - start
    os.waitpid(pid, 0)
    os.sched_setaffinity(0, range(os.cpu_count() or 1))
    for fd in (to_child_r, to_child_w, to_parent_r, to_parent_w):
        os.close(fd)
    return elapsed / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20000)
    args = parser.parse_args()
    placements = [("same CPU (0, 0)", 0, 0), ("not pinned", None, None)]
    if (os.cpu_count() or 1) > 1:
        placements.insert(1, ("two CPUs (0, 1)", 0, 1))
    for name, parent, child in placements:
        print(f"{name:18} {bounce(args.rounds, parent, child):7.1f} us per round trip")


if __name__ == "__main__":
    main()
