#!/usr/bin/env python3
"""Prefetch fairness benchmark (issue 16): does prefetch ever make a short job wait behind a
long one while a process idles?

A host runs 4 processes of one job (`block` by default: a job that holds its thread, the case
where only the prefetch thread can give a held job back; `--worker sleep` for one that awaits).
Each round first warms the processes with 200 short jobs (so prefetch is on: it needs 8 short
runs), then submits together, as foreground jobs on one connection, a shuffled mix of 8 jobs
of 2 s and 200 of 1 ms (the same order for both modes of a round), and records when each
completes. Rounds alternate prefetch on and off (`prefetch = false`), each on a fresh host.

Reported per mode (medians over the rounds): the total time, the latest completion of a short
job, and how many short jobs took more than 100 ms; and, with prefetch, how many held jobs were
given back. Target: total within 5% of the run without prefetch, and no short job waiting
behind a long one while a process idles, which shows as short-job latencies like those without
prefetch (a short job held behind a 2 s one would take 2 s or more).

Usage: scripts/bench_fairness.py [--rounds 3] [--server gearmand|builtin] [--worker block|sleep]
"""

import argparse
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_drain as drain  # noqa: E402

LONG_MS, LONGS, SHORT_MS, SHORTS, WARM = 2000, 8, 1, 200, 200


def host_config(tmp, port, worker, prefetch):
    return drain.host_config(tmp, port, "mix", 4, worker=worker, file=f"fair-{prefetch}",
                             extra=f"prefetch = {'true' if prefetch else 'false'}\n")


def run_foreground(port, workloads):
    """Submits every workload at once on one connection; returns (seconds to each completion,
    in submission order, measured from the first submit)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start = time.perf_counter()
    out = b""
    for i, w in enumerate(workloads):
        body = b"mix\0" + f"u{time.time_ns()}-{i}".encode() + b"\0" + w.encode()
        out += b"\0REQ" + struct.pack(">II", 7, len(body)) + body
    sock.sendall(out)
    handles, done = [], {}
    while len(done) < len(workloads):
        kind, body = drain.read_packet(sock)
        if kind == 8:  # JOB_CREATED, in submission order
            handles.append(body)
        elif kind in (13, 14, 25):  # WORK_COMPLETE, WORK_FAIL, WORK_EXCEPTION
            handle = body.split(b"\0", 1)[0]
            done[handle] = time.perf_counter() - start
    sock.close()
    return [done[h] for h in handles]


def one_run(port, worker, prefetch, order, tmp, geardriver):
    config = host_config(tmp, port, worker, prefetch)
    host = subprocess.Popen([geardriver, "run", "--config", config], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, GEARDRIVER_LOG="debug"))
    try:
        drain.wait_children(host.pid, 4, "the host")
        run_foreground(port, [str(SHORT_MS)] * WARM)
        times = run_foreground(port, order)
    finally:
        host.terminate()
        host.wait(30)
    shorts = [t for t, w in zip(times, order) if w == str(SHORT_MS)]
    with open(os.path.join(tmp, f"fair-{prefetch}.log")) as f:
        given_back = f.read().count("gave a prefetched job back to the job server: the job ahead")
    os.remove(os.path.join(tmp, f"fair-{prefetch}.log"))
    return {"total": max(times), "last_short": max(shorts),
            "slow_shorts": sum(1 for t in shorts if t > 0.1), "given_back": given_back}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", choices=["gearmand", "builtin"], default="gearmand")
    parser.add_argument("--worker", choices=["block", "sleep"], default="block")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--geardriver", default=os.path.join(drain.ROOT, "target", "release", "geardriver"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    results = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        server, port = drain.start_server(args.server, tmp, args.geardriver)
        try:
            for r in range(args.rounds):
                order = [str(LONG_MS)] * LONGS + [str(SHORT_MS)] * SHORTS
                rng.shuffle(order)
                for prefetch in ([True, False] if r % 2 == 0 else [False, True]):
                    res = one_run(port, args.worker, prefetch, order, tmp, args.geardriver)
                    results[prefetch].append(res)
                    print(f"round {r + 1} prefetch={prefetch!s:5} total {res['total']:.3f} s, last short "
                          f"{res['last_short']:.3f} s, shorts over 100 ms {res['slow_shorts']}, "
                          f"given back {res['given_back']}", file=sys.stderr)
        finally:
            server.kill()
            server.wait()
    med = {p: {k: statistics.median(r[k] for r in v) for k in v[0]} for p, v in results.items()}
    print(f"{args.server}, `{args.worker}` worker, 4 processes, {LONGS} jobs of {LONG_MS} ms and "
          f"{SHORTS} of {SHORT_MS} ms, median of {args.rounds} rounds:\n")
    print("| prefetch | total | last short job done | short jobs over 100 ms | held jobs given back |")
    print("|---|---:|---:|---:|---:|")
    for p in (True, False):
        m = med[p]
        print(f"| {'on' if p else 'off'} | {m['total']:.3f} s | {m['last_short']:.3f} s | "
              f"{m['slow_shorts']:.0f} | {m['given_back']:.0f} |")
    ratios = [a["total"] / b["total"] for a, b in zip(results[True], results[False])]
    print(f"\n- total with ÷ without prefetch, per round: {statistics.median(ratios):.3f}× (median), "
          f"{min(ratios):.3f} – {max(ratios):.3f}×")


if __name__ == "__main__":
    main()
