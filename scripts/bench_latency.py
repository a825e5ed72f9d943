#!/usr/bin/env python3
"""Foreground round-trip latency: one client (examples/rt_latency) runs sequential
foreground echo jobs, each timed from submit to result, against
  host1 - `geardriver run` with one echo process
  c     - one C `gearman -w` worker
on gearmand and on the built-in server. Reports p50/p99 per pair, alternating rounds.

Usage: cargo build --release --example rt_latency && scripts/bench_latency.py [--jobs 3000] [--rounds 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_drain as drain  # noqa: E402
import bench_server as server  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    target = os.path.join(drain.ROOT, "target", "release")
    parser.add_argument("--geardriver", default=os.path.join(target, "geardriver"))
    parser.add_argument("--client", default=os.path.join(target, "examples", "rt_latency"))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        gearmand, gport = drain.start_gearmand(tmp)
        builtin, bport = server.start_builtin(args.geardriver)
        try:
            for r in range(args.rounds):
                for srv, port in (("gearmand", gport), ("built-in", bport)):
                    for worker in ("host1", "c"):
                        function = f"lat_{r}_{worker}"
                        procs = drain.worker_commands(worker, port, function, tmp, args.geardriver)
                        workers = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in procs]
                        admin = drain.Admin(port)
                        while admin.status().get(function, (0, 0, 0))[2] < 1:
                            time.sleep(0.01)
                        out = subprocess.run([args.client, f"127.0.0.1:{port}", function, str(args.jobs)],
                                             capture_output=True, check=True, text=True).stdout
                        for w in workers:
                            w.terminate()
                            w.wait()
                        row = json.loads(out)
                        results.setdefault((srv, worker), []).append(row)
                        print(f"round {r + 1} {srv:8} {worker:5} p50 {row['p50_us']:7.1f} µs  p99 {row['p99_us']:7.1f} µs",
                              file=sys.stderr)
        finally:
            for proc in (gearmand, builtin):
                proc.kill()
                proc.wait()
    print(f"| job server | worker | p50 (median of {args.rounds}) | p99 (median) |")
    print("|---|---|---:|---:|")
    summary = {}
    for (srv, worker), rows in results.items():
        p50 = statistics.median(r["p50_us"] for r in rows)
        p99 = statistics.median(r["p99_us"] for r in rows)
        summary[f"{srv}/{worker}"] = {"p50_us": p50, "p99_us": p99}
        print(f"| {srv} | {worker} | {p50:.0f} µs | {p99:.0f} µs |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
