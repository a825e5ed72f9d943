#!/usr/bin/env python3
"""The built-in job server against gearmand, with the same C client and C worker
(gearman-tools), in alternating rounds of the same run:

  submit  - `gearman -b -N -f F` submits N background jobs (one per line), timed
  drain   - then one `gearman -w -f F` drains them (until a LOW-priority sentinel job
            completes and `status` shows nothing left), timed
  drain4  - the same drain with 4 C workers
  fg      - C clients in parallel (`gearman -N -f F`, one foreground job per line, each
            waiting for its result) against as many C workers: round trips per second

For drain4 and fg it also reports the CPU time per job (user + system) of the job server and
of the C peers (clients and workers, from RUSAGE_CHILDREN): on a machine with few cores the
peers' own CPU bounds what any job server can reach, and says by how much.

Usage: cargo build --release && scripts/bench_server.py [--jobs 20000] [--rounds 4]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_drain as drain  # noqa: E402


start_builtin = drain.start_builtin


def children_cpu_us():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (r.ru_utime + r.ru_stime) * 1e6


CPU = {}


def submit_and_drain(port, function, jobs, workers=1, server_pid=None):
    admin = drain.Admin(port)
    lines = "".join(f"job-{i}\n" for i in range(jobs)).encode()
    start = time.perf_counter()
    subprocess.run(["gearman", "-h", "127.0.0.1", "-p", str(port), "-b", "-N", "-f", function],
                   input=lines, stdout=subprocess.DEVNULL, check=True)
    submit_s = time.perf_counter() - start
    while admin.total(function) < jobs:
        time.sleep(0.01)
    sentinel = drain.submit_sentinel(port, function)
    peers_before, server_before = children_cpu_us(), drain.cpu_us(server_pid)
    start = time.perf_counter()
    procs = [subprocess.Popen(["gearman", "-w", "-h", "127.0.0.1", "-p", str(port), "-f", function],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(workers)]
    drain.wait_sentinel(sentinel)
    while admin.total(function) > 0:
        time.sleep(0.001)
    drain_s = time.perf_counter() - start
    server_used = drain.cpu_us(server_pid) - server_before
    for worker in procs:
        worker.terminate()
        worker.wait()
    CPU.setdefault((server_pid, f"drain{workers}"), []).append(
        ((children_cpu_us() - peers_before) / (jobs + 1), server_used / (jobs + 1)))
    return jobs / submit_s, (jobs + 1) / drain_s


def foreground(port, function, clients, per_client, server_pid=None):
    admin = drain.Admin(port)
    peers_before, server_before = children_cpu_us(), drain.cpu_us(server_pid)
    workers = [subprocess.Popen(["gearman", "-w", "-h", "127.0.0.1", "-p", str(port), "-f", function],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(clients)]
    while admin.status().get(function, (0, 0, 0))[2] < clients:
        time.sleep(0.01)
    lines = "".join(f"rt-{i}\n" for i in range(per_client)).encode()
    start = time.perf_counter()
    procs = [subprocess.Popen(["gearman", "-h", "127.0.0.1", "-p", str(port), "-N", "-f", function],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL) for _ in range(clients)]
    for p in procs:
        p.stdin.write(lines)
        p.stdin.close()
    for p in procs:
        if p.wait() != 0:
            sys.exit("a foreground client failed")
    elapsed = time.perf_counter() - start
    server_used = drain.cpu_us(server_pid) - server_before
    for w in workers:
        w.terminate()
        w.wait()
    jobs = clients * per_client
    CPU.setdefault((server_pid, "fg"), []).append(
        ((children_cpu_us() - peers_before) / jobs, server_used / jobs))
    return jobs / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--per-client", type=int, default=5000)
    parser.add_argument("--geardriver", default=os.path.join(drain.ROOT, "target", "release", "geardriver"))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results = {kind: {"submit": [], "drain": [], "drain4": [], "fg": []} for kind in ("gearmand", "built-in")}
    with tempfile.TemporaryDirectory() as tmp:
        gearmand, gport = drain.start_gearmand(tmp)
        builtin, bport = start_builtin(args.geardriver)
        ports = {"gearmand": gport, "built-in": bport}
        pids = {"gearmand": gearmand.pid, "built-in": builtin.pid}
        try:
            for r in range(args.rounds):
                order = ["gearmand", "built-in"] if r % 2 == 0 else ["built-in", "gearmand"]
                for kind in order:
                    submit, drained = submit_and_drain(ports[kind], f"bg_{r}", args.jobs,
                                                       server_pid=pids[kind])
                    _, drained4 = submit_and_drain(ports[kind], f"bg4_{r}", args.jobs, workers=4,
                                                   server_pid=pids[kind])
                    fg = foreground(ports[kind], f"fg_{r}", args.clients, args.per_client, pids[kind])
                    for key, value in (("submit", submit), ("drain", drained), ("drain4", drained4), ("fg", fg)):
                        results[kind][key].append(value)
                    print(f"round {r + 1} {kind:8} submit {submit:7.0f}/s  drain {drained:7.0f}/s  "
                          f"drain4 {drained4:7.0f}/s  fg {fg:7.0f}/s", file=sys.stderr)
        finally:
            for proc in (gearmand, builtin):
                proc.kill()
                proc.wait()
    print(f"| phase | gearmand (median of {args.rounds}) | built-in | built-in ÷ gearmand |")
    print("|---|---:|---:|---:|")
    labels = {"submit": f"submit {args.jobs} background jobs (jobs/s)",
              "drain": "drain them with one C worker (jobs/s)",
              "drain4": "drain them with 4 C workers (jobs/s)",
              "fg": f"foreground round trips, {args.clients} clients × {args.per_client} (jobs/s)"}
    for key, label in labels.items():
        g = statistics.median(results["gearmand"][key])
        b = statistics.median(results["built-in"][key])
        print(f"| {label} | {g:.0f} | {b:.0f} | {b / g:.2f}× |")
    print(f"\nCPU time per job (user + system, median of the rounds), {os.cpu_count()} CPUs:\n")
    print("| phase | server | its C peers | gearmand | its C peers | ceiling of built-in ÷ gearmand with the CPUs busy |")
    print("|---|---:|---:|---:|---:|---:|")
    for phase in ("drain1", "drain4", "fg"):
        row = {}
        for kind in ("built-in", "gearmand"):
            samples = CPU.get((pids[kind], phase), [])
            row[kind] = (statistics.median(p for p, _ in samples), statistics.median(s for _, s in samples))
        (bp, bs), (gp, gs) = row["built-in"], row["gearmand"]
        print(f"| {phase} | {bs:.1f} µs | {bp:.1f} µs | {gs:.1f} µs | {gp:.1f} µs | {(gp + gs) / (bp + bs):.2f}× |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: {srv: statistics.median(results[srv][k]) for srv in results} for k in labels}, f, indent=1)


if __name__ == "__main__":
    main()
