#!/usr/bin/env python3
"""Two builds of geardriver's persistent queue, side by side: background submits from the C
client (`gearman -b -N`, one job in flight per client) to `geardriver server --queue FILE`
of each build, 1 and 4 clients, in alternating order, each server started afresh with a new
queue file. For measuring one change against the build before it (issue 14's notes in
BENCHMARKS.md); scripts/bench_queue.py is the whole benchmark.

Usage: scripts/bench_queue_ab.py --old BIN --new BIN [--kinds normal,full] [--rounds 3] [--jobs 2000]
"""

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_queue as bq  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True)
    parser.add_argument("--new", required=True)
    parser.add_argument("--kinds", default="normal,full")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    builds = [("old", args.old), ("new", args.new)]
    rates = {}
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        for r in range(args.rounds):
            for name, binary in builds if r % 2 == 0 else reversed(builds):
                for kind in args.kinds.split(","):
                    for clients in (1, 4):
                        server = bq.Server(kind, tmp, binary, f"{name}{r}{clients}")
                        try:
                            rate = bq.submit(server.port, f"f{r}", args.jobs, clients)
                        finally:
                            server.stop()
                        rates.setdefault((kind, clients, name), []).append(rate)
        mean, median = bq.fsync_us(tmp, 200)
        print(f"fsync: mean {mean:.0f} µs, median {median:.0f} µs")
    for (kind, clients, name), values in sorted(rates.items()):
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"{kind:6} {clients} client(s) {name}: median {statistics.median(values):.0f} jobs/s ({rounds})")


if __name__ == "__main__":
    main()
