#!/usr/bin/env python3
"""Concurrency benchmark (issue 16): 1,000 jobs of `sleep 100` (ms) on 4 processes × 25 slots.

A host runs the `sleep` plugin with `concurrency = 25` and 4 processes (min = max = 4); one
client submits 1,000 foreground jobs of 100 ms at once (one connection) and times until the
last completes. The ideal is 1,000 jobs/s (100 slots, 10 jobs a second each). Also reported:
the resident memory of the 4 worker processes (VmRSS summed at the end of the run, and the
sum of their peaks, VmHWM), and, for scale, what the same throughput would take without
concurrency (100 processes; `--compare` runs it: min = max = 100, concurrency 1).

Usage: scripts/bench_concurrency.py [--rounds 3] [--server gearmand|builtin] [--compare]
"""

import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_drain as drain  # noqa: E402

JOBS, MS = 1000, 100


def config(tmp, port, processes, concurrency):
    return drain.host_config(tmp, port, "nap", processes, worker="sleep", file=f"nap-{processes}",
                             extra=f"concurrency = {concurrency}\n")


def memory_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(port, tmp, geardriver, processes, concurrency):
    host = subprocess.Popen([geardriver, "run", "--config", config(tmp, port, processes, concurrency)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        drain.wait_children(host.pid, processes, "the host")
        time.sleep(0.5)  # every worker loop registered
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        out = b""
        for i in range(JOBS):
            body = b"nap\0" + f"n{time.time_ns()}-{i}".encode() + b"\0" + str(MS).encode()
            out += b"\0REQ" + struct.pack(">II", 7, len(body)) + body
        start = time.perf_counter()
        sock.sendall(out)
        done = 0
        while done < JOBS:
            kind, _ = drain.read_packet(sock)
            if kind in (13, 14, 25):
                done += 1
        elapsed = time.perf_counter() - start
        sock.close()
        workers = drain.children(host.pid)
        rss = sum(memory_kb(p, "VmRSS") for p in workers)
        hwm = sum(memory_kb(p, "VmHWM") for p in workers)
        return JOBS / elapsed, rss / 1024, hwm / 1024
    finally:
        host.terminate()
        host.wait(30)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", choices=["gearmand", "builtin"], default="gearmand")
    parser.add_argument("--compare", action="store_true", help="also 100 processes of concurrency 1")
    parser.add_argument("--geardriver", default=os.path.join(drain.ROOT, "target", "release", "geardriver"))
    args = parser.parse_args()
    shapes = [(4, 25)] + ([(100, 1)] if args.compare else [])
    results = {s: [] for s in shapes}
    with tempfile.TemporaryDirectory() as tmp:
        server, port = drain.start_server(args.server, tmp, args.geardriver)
        try:
            for r in range(args.rounds):
                for shape in shapes:
                    rate, rss, hwm = run(port, tmp, args.geardriver, *shape)
                    results[shape].append((rate, rss, hwm))
                    print(f"round {r + 1} {shape[0]} processes × {shape[1]}: {rate:.0f} jobs/s, "
                          f"RSS {rss:.1f} MB (peaks {hwm:.1f} MB)", file=sys.stderr)
        finally:
            server.kill()
            server.wait()
    print(f"{args.server}: {JOBS} jobs of `sleep {MS}`, median of {args.rounds} rounds\n")
    print("| processes × concurrency | jobs/s | ÷ ideal 1,000/s | RSS of the processes | sum of their peaks |")
    print("|---|---:|---:|---:|---:|")
    for (p, c), rows in results.items():
        rate = statistics.median(r[0] for r in rows)
        rss = statistics.median(r[1] for r in rows)
        hwm = statistics.median(r[2] for r in rows)
        print(f"| {p} × {c} | {rate:.0f} | {rate / 1000:.2f}× | {rss:.1f} MB | {hwm:.1f} MB |")


if __name__ == "__main__":
    main()
