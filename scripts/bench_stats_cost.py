#!/usr/bin/env python3
"""What the stats table costs on the echo throughput: the same worker process (the spec the
host gives it) drains N background echo jobs with a stats slot (two seqlock writes per job)
and without one, in alternating rounds on one gearmand. Reports the median throughput of each,
the median of the rounds' ratios (with ÷ without, measured back to back), and the worker's CPU
time per job (user + system, /proc/PID/stat), which the job server's pace does not blur.

Usage: scripts/bench_stats_cost.py [--jobs 20000] [--rounds 6]
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--geardriver", default=os.path.join(drain.ROOT, "target", "release", "geardriver"))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gearmand, port = drain.start_gearmand(tmp)
        # A host with no processes, only to create the stats table the worker attaches to.
        config = os.path.join(tmp, "idle.toml")
        with open(config, "w") as f:
            f.write(f'[driver]\njob_servers = ["127.0.0.1:{port}"]\ninterval = 0\nlogfile = "{tmp}/idle.log"\n'
                    f'[console]\nlisten = ""\n')
        host = subprocess.Popen([args.geardriver, "run", "--config", config],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The table is a memfd among the host's descriptors; the worker inherits a copy.
        deadline = time.time() + 10
        stats_fd = None
        while stats_fd is None:
            for fd in os.listdir(f"/proc/{host.pid}/fd"):
                try:
                    if os.readlink(f"/proc/{host.pid}/fd/{fd}").startswith("/memfd:geardriver-stats"):
                        stats_fd = os.open(f"/proc/{host.pid}/fd/{fd}", os.O_RDWR)
                        break
                except OSError:
                    pass
            if stats_fd is None:
                if time.time() > deadline:
                    sys.exit("the host did not create its stats table")
                time.sleep(0.01)
        rates = {"with slot": [], "without": []}
        cpu = {"with slot": [], "without": []}
        try:
            for r in range(args.rounds):
                kinds = ["with slot", "without"] if r % 2 == 0 else ["without", "with slot"]
                for kind in kinds:
                    function = f"stats_{r}_{kind[:4]}"
                    spec = {
                        "pool": function, "servers": [f"127.0.0.1:{port}"],
                        "functions": [{"name": function, "run": {"Plugin": "echo"}, "decode": "raw",
                                       "encode": "raw", "timeout_ms": None, "env": {}}],
                        "client_id": function,
                        "stats": {"fd": stats_fd, "slot": 100} if kind == "with slot" else None,
                        "max_jobs": None, "max_lifetime_ms": None, "parent_pid": None,
                        "shutdown_timeout_ms": 0,
                    }
                    admin = drain.Admin(port)
                    drain.queue_jobs(port, function, args.jobs, admin)
                    sentinel = drain.submit_sentinel(port, function)
                    start = time.perf_counter()
                    worker = subprocess.Popen([args.geardriver, "worker"],
                                              env=dict(os.environ, GEARDRIVER_WORKER_SPEC=json.dumps(spec)),
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                              pass_fds=(stats_fd,))
                    drain.wait_sentinel(sentinel)
                    rate = (args.jobs + 1) / (time.perf_counter() - start)
                    cpu[kind].append(drain.cpu_us(worker.pid) / (args.jobs + 1))
                    worker.terminate()
                    worker.wait()
                    rates[kind].append(rate)
                    print(f"round {r + 1} {kind:9} {rate:8.0f} jobs/s", file=sys.stderr)
        finally:
            host.terminate()
            host.wait()
            gearmand.kill()
            gearmand.wait()
    with_slot, without = statistics.median(rates["with slot"]), statistics.median(rates["without"])
    paired = drain.per_round_ratio(rates["with slot"], rates["without"])
    print(f"| worker process | jobs/s (median of {args.rounds}) | min – max | CPU per job (median) |")
    print("|---|---:|---:|---:|")
    for kind in rates:
        print(f"| {kind} | {statistics.median(rates[kind]):.0f} | {min(rates[kind]):.0f} – {max(rates[kind]):.0f} "
              f"| {statistics.median(cpu[kind]):.1f} µs |")
    print(f"\nwith ÷ without: {with_slot / without:.3f}× of the medians; {drain.show_ratio(paired, 3)}; CPU per job "
          f"{statistics.median(cpu['with slot']) / statistics.median(cpu['without']):.3f}× without's")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"with_vs_without": with_slot / without,
                       "paired": paired,
                       "cpu_per_job_us": {k: statistics.median(v) for k, v in cpu.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
