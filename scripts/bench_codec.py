#!/usr/bin/env python3
"""What the plugin layer (codecs, hooks, panic capture) costs on echo throughput.

Three workers drain N background jobs each on one gearmand, in alternating rounds:
  bare  - examples/bare_echo_worker: the worker loop returning the workload untouched
  raw   - `geardriver worker` serving the `echo` plugin with decode = encode = "raw"
  json  - the same with decode = encode = "json" (the payloads are JSON objects)
`bare` runs twice per round, once with the raw payloads and once with the JSON ones, so each
codec is compared with the baseline on the same bytes. Target: raw within 5% of bare.

Usage: cargo build --release --example bare_echo_worker && scripts/bench_codec.py [--rounds 6]
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


def queue(port, function, payloads, admin):
    subprocess.run(["gearman", "-h", "127.0.0.1", "-p", str(port), "-b", "-N", "-f", function],
                   input="".join(p + "\n" for p in payloads).encode(), stdout=subprocess.DEVNULL, check=True)
    while admin.total(function) < len(payloads):
        time.sleep(0.01)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=6)
    target = os.path.join(drain.ROOT, "target", "release")
    parser.add_argument("--geardriver", default=os.path.join(target, "geardriver"))
    parser.add_argument("--bare", default=os.path.join(target, "examples", "bare_echo_worker"))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    for binary in (args.geardriver, args.bare):
        if not os.path.exists(binary):
            sys.exit(f"{binary} not found: cargo build --release && cargo build --release --example bare_echo_worker")
    raw_payloads = [f"job-{i}" for i in range(args.jobs)]
    json_payloads = [json.dumps({"id": i, "text": f"job number {i}", "tags": ["a", "b"]}, separators=(",", ":"))
                     for i in range(args.jobs)]
    rates = {"bare (raw payloads)": [], "raw": [], "bare (JSON payloads)": [], "json": []}
    cpu = {kind: [] for kind in rates}
    with tempfile.TemporaryDirectory() as tmp:
        gearmand, port = drain.start_gearmand(tmp)
        server = f"127.0.0.1:{port}"
        try:
            for r in range(args.rounds):
                plan = [("bare (raw payloads)", raw_payloads, None), ("raw", raw_payloads, "raw"),
                        ("bare (JSON payloads)", json_payloads, None), ("json", json_payloads, "json")]
                if r % 2:
                    plan.reverse()
                for kind, payloads, codec in plan:
                    function = f"codec_{r}_{len(rates[kind])}_{kind.split()[0]}{'j' if 'JSON' in kind else ''}"
                    admin = drain.Admin(port)
                    queue(port, function, payloads, admin)
                    sentinel = drain.submit_sentinel(port, function)
                    if codec is None:
                        cmd, env = [args.bare, server, function], os.environ
                    else:
                        spec = {"pool": function, "servers": [server],
                                "functions": [{"name": function, "run": {"Plugin": "echo"}, "decode": codec,
                                               "encode": codec, "timeout_ms": None, "env": {}}],
                                "client_id": function, "stats": None, "max_jobs": None,
                                "max_lifetime_ms": None, "parent_pid": None}
                        cmd, env = [args.geardriver, "worker"], dict(os.environ, GEARDRIVER_WORKER_SPEC=json.dumps(spec))
                    start = time.perf_counter()
                    worker = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    # The sentinel is not JSON: with the json codec it fails, which ends the job too.
                    drain.wait_sentinel(sentinel)
                    rate = (len(payloads) + 1) / (time.perf_counter() - start)
                    cpu[kind].append(drain.cpu_us(worker.pid) / (len(payloads) + 1))
                    worker.terminate()
                    worker.wait()
                    rates[kind].append(rate)
                    print(f"round {r + 1} {kind:22} {rate:8.0f} jobs/s", file=sys.stderr)
        finally:
            gearmand.kill()
            gearmand.wait()
    med = {k: statistics.median(v) for k, v in rates.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"| worker | jobs/s (median of {args.rounds}) | min – max | CPU per job (median) |")
    print("|---|---:|---:|---:|")
    for kind, values in rates.items():
        print(f"| {kind} | {med[kind]:.0f} | {min(values):.0f} – {max(values):.0f} | {cpu_med[kind]:.1f} µs |")
    print()
    paired = {}
    for codec, bare in (("raw", "bare (raw payloads)"), ("json", "bare (JSON payloads)")):
        paired[codec] = drain.per_round_ratio(rates[codec], rates[bare])
        print(f"- {codec} codec layer: {med[codec] / med[bare]:.3f}× bare of the medians; "
              f"{drain.show_ratio(paired[codec], 3)}; CPU per job {cpu_med[codec] / cpu_med[bare]:.2f}× bare's")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"raw_vs_bare": med["raw"] / med["bare (raw payloads)"],
                       "json_vs_bare": med["json"] / med["bare (JSON payloads)"], "jobs_per_s": med,
                       "paired": paired, "cpu_per_job_us": cpu_med}, f, indent=1)


if __name__ == "__main__":
    main()
