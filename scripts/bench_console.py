#!/usr/bin/env python3
"""Console latency with many processes: `status` and `scoreboard` answered by a host that
supervises N worker processes (default 500), timed from sending the line to reading the `.`
line, over one connection. Target: `status` under 50 ms.

Usage: scripts/bench_console.py [--processes 500] [--samples 50]
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_drain as drain  # noqa: E402


def ask(sock, line):
    sock.sendall(line.encode() + b"\r\n")
    reply = b""
    while not (reply.endswith(b"\r\n.\r\n") or reply == b".\r\n"):
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise RuntimeError("console closed the connection")
        reply += chunk
    return reply.decode()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=500)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--geardriver", default=os.path.join(drain.ROOT, "target", "release", "geardriver"))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    n = args.processes
    with tempfile.TemporaryDirectory() as tmp:
        gearmand, port = drain.start_gearmand(tmp)
        console_port = drain.free_port()
        config = os.path.join(tmp, "many.toml")
        # Several jobs, as a real fleet has, sharing the processes between them.
        jobs = 10
        per_job = n // jobs
        with open(config, "w") as f:
            f.write(f'[driver]\njob_servers = ["127.0.0.1:{port}"]\ninterval = 0\nlogfile = "{tmp}/host.log"\n'
                    f'[console]\nlisten = "127.0.0.1:{console_port}"\n')
            for j in range(jobs):
                f.write(f'[[jobs]]\nname = "job{j:02}"\nworker = "echo"\nmin_processes = {per_job}\n'
                        f'max_processes = {per_job}\n')
        host = subprocess.Popen([args.geardriver, "run", "--config", config],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 300
            while True:
                try:
                    sock = socket.create_connection(("127.0.0.1", console_port))
                    break
                except OSError:
                    if time.time() > deadline:
                        sys.exit("console did not come up")
                    time.sleep(0.05)
            # Wait until every process is up and idle in the stats table.
            while True:
                board = ask(sock, "scoreboard").splitlines()[:-1]
                idle = sum(1 for line in board if line.split()[2] == "_")
                if idle >= per_job * jobs:
                    break
                if time.time() > deadline:
                    sys.exit(f"only {idle} of {per_job * jobs} processes idle after 300 s")
                time.sleep(0.2)
            results = {}
            for command in ("status", "scoreboard"):
                times = []
                for _ in range(args.samples):
                    start = time.perf_counter()
                    reply = ask(sock, command)
                    times.append((time.perf_counter() - start) * 1000)
                results[command] = (times, reply.count("\r\n") - 1)
            host_rss = drain.peak_rss_kb(host.pid)
        finally:
            host.terminate()
            host.wait(120)
            gearmand.kill()
            gearmand.wait()
    print(f"{per_job * jobs} processes in {jobs} jobs; host peak RSS {host_rss / 1024:.1f} MB")
    print(f"| command | lines | median | p90 | max (of {args.samples}) |")
    print("|---|---:|---:|---:|---:|")
    for command, (times, lines) in results.items():
        times.sort()
        p90 = times[int(len(times) * 0.9) - 1]
        print(f"| {command} | {lines} | {statistics.median(times):.2f} ms | {p90:.2f} ms | {max(times):.2f} ms |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"processes": per_job * jobs, "host_peak_rss_kb": host_rss,
                       **{c: {"median_ms": statistics.median(t), "max_ms": max(t)} for c, (t, _) in results.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
