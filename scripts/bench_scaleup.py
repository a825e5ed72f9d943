#!/usr/bin/env python3
"""Scale-up reaction time: from a backlog to max processes running.

A host runs one `sleep` job with min_processes = 1, max_processes = 4 and the given interval.
Once its one process is idle, a backlog of background jobs (each sleeping 3 s) is queued at
once; the clock runs from the end of that submit until (a) 4 worker processes exist and
(b) gearmand's `status` shows 4 of the jobs running, i.e. every process is serving. The target
is interval + 0.5 s. Repeated with a fresh host each round; reports every round and the worst.

Usage: scripts/bench_scaleup.py [--interval 1] [--rounds 5]
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_drain as drain  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--geardriver", default=os.path.join(drain.ROOT, "target", "release", "geardriver"))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gearmand, port = drain.start_gearmand(tmp)
        spawned, running = [], []
        try:
            for r in range(args.rounds):
                function = f"scale_{r}"
                config = os.path.join(tmp, f"{function}.toml")
                with open(config, "w") as f:
                    f.write(f"""[driver]
job_servers = ["127.0.0.1:{port}"]
interval = {args.interval}
logfile = "{tmp}/{function}.log"
[console]
listen = ""
[[jobs]]
name = "{function}"
worker = "sleep"
min_processes = 1
max_processes = 4
""")
                host = subprocess.Popen([args.geardriver, "run", "--config", config],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                admin = drain.Admin(port)
                try:
                    while admin.status().get(function, (0, 0, 0))[2] < 1:
                        time.sleep(0.01)
                    # A random moment of the poll cycle, so the rounds sample its whole phase.
                    time.sleep(args.interval * random.uniform(1.0, 2.0))
                    subprocess.run(["gearman", "-h", "127.0.0.1", "-p", str(port), "-b", "-N", "-f", function],
                                   input=b"3000\n" * 12, check=True)
                    start = time.perf_counter()
                    t_spawned = t_running = None
                    while t_running is None and time.perf_counter() - start < 30:
                        now = time.perf_counter() - start
                        if t_spawned is None and len(drain.children(host.pid)) >= 4:
                            t_spawned = now
                        if admin.status().get(function, (0, 0, 0))[1] >= 4:
                            t_running = now
                            # Four running jobs mean four processes, even if the /proc scan
                            # of this same turn came a moment too early to see the last one.
                            t_spawned = t_spawned if t_spawned is not None else now
                        time.sleep(0.005)
                    if t_running is None:
                        sys.exit(f"round {r + 1}: the host never had 4 jobs running within 30 s")
                    spawned.append(t_spawned)
                    running.append(t_running)
                    print(f"round {r + 1}: 4 processes after {t_spawned:.3f} s, 4 running jobs after {t_running:.3f} s",
                          file=sys.stderr)
                finally:
                    host.terminate()
                    host.wait(30)
        finally:
            gearmand.kill()
            gearmand.wait()
    target = args.interval + 0.5
    worst = max(running)
    print(f"| interval | backlog → 4 processes (worst of {args.rounds}) | backlog → 4 running (worst) | target |")
    print("|---:|---:|---:|---:|")
    print(f"| {args.interval:g} s | {max(spawned):.3f} s | {worst:.3f} s | ≤ {target:g} s {'✓' if worst <= target else '✗'} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"interval_s": args.interval, "worst_spawned_s": max(spawned), "worst_running_s": worst, "target_s": target}, f, indent=1)


if __name__ == "__main__":
    main()
