#!/usr/bin/env python3
"""Spawn rate: a host told to keep N echo processes (one job, min = max = N) is started, and
timed until the job server's `status` shows all N registered; then it is stopped (SIGTERM)
and timed until it has exited with every process. Repeated with a fresh host each round.

Usage: cargo build --release && scripts/bench_spawn.py [--processes 100] [--rounds 3]
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
    parser.add_argument("--processes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--geardriver", default=os.path.join(drain.ROOT, "target", "release", "geardriver"))
    args = parser.parse_args()
    n = args.processes
    up, down = [], []
    with tempfile.TemporaryDirectory() as tmp:
        srv, port = server.start_builtin(args.geardriver)
        try:
            for r in range(args.rounds):
                function = f"spawn_{r}"
                config = os.path.join(tmp, f"{function}.toml")
                with open(config, "w") as f:
                    f.write(f'[driver]\njob_servers = ["127.0.0.1:{port}"]\ninterval = 0\nlogfile = "{tmp}/{function}.log"\n'
                            f'[console]\nlisten = ""\n[[jobs]]\nname = "{function}"\nworker = "echo"\n'
                            f'min_processes = {n}\nmax_processes = {n}\n')
                admin = drain.Admin(port)
                start = time.perf_counter()
                host = subprocess.Popen([args.geardriver, "run", "--config", config],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                while admin.status().get(function, (0, 0, 0))[2] < n:
                    if time.perf_counter() - start > 120:
                        sys.exit("the processes did not all register within 120 s")
                    time.sleep(0.005)
                up.append(time.perf_counter() - start)
                start = time.perf_counter()
                host.terminate()
                host.wait(120)
                down.append(time.perf_counter() - start)
                print(f"round {r + 1}: {n} processes up in {up[-1]:.3f} s, stopped in {down[-1]:.3f} s", file=sys.stderr)
        finally:
            srv.kill()
            srv.wait()
    rate = n / statistics.median(up)
    print(f"| processes | start → all registered (median of {args.rounds}) | spawn rate | graceful stop of all |")
    print("|---:|---:|---:|---:|")
    print(f"| {n} | {statistics.median(up):.3f} s | {rate:.0f} processes/s | {statistics.median(down):.3f} s |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"processes": n, "up_s": statistics.median(up), "rate_per_s": rate,
                       "stop_s": statistics.median(down)}, f, indent=1)


if __name__ == "__main__":
    main()
