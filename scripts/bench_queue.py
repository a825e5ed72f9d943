#!/usr/bin/env python3
"""The built-in server's persistent queue (issue 14) against the built-in server in memory,
gearmand in memory and gearmand's own SQLite queue, with the same C client and C worker
(gearman-tools), in alternating rounds of the same run:

  submit   - ONE `gearman -b -N -f F` submits N background jobs (one per line; each waits
             for its JOB_CREATED, so for a durable queue each waits for its write), timed
  drain    - then one `gearman -w -f F` drains them (until a LOW-priority foreground sentinel
             completes and `status` shows nothing left), timed
  submit4  - 4 concurrent `gearman -b -N` clients, N/4 jobs each, timed until all exit

on these servers, each started afresh for each measurement with a new queue file:

  mem      - `geardriver server` (no queue)
  normal   - `geardriver server --queue FILE` (synchronous=NORMAL, the default)
  full     - `geardriver server --queue FILE --queue-sync full` (an fsync per group commit)
  gd-mem   - gearmand, no queue
  gd-sqlite - gearmand `-q libsqlite3 --libsqlite3-db FILE` (one commit per job; slow, so it
             gets --slow-jobs jobs: the rates are per second, so they compare)

submit4 runs on normal, full and gd-sqlite only. Each round also times the machine's fsync
(--fsyncs writes of 4 KiB, each followed by os.fsync, to a file in the queue files' directory):
what one durable commit costs at least, which sets the pace of `full` and of gearmand's queue.

Then, once per round, the restore: a queue file holding 100,000 jobs (written with Python's
sqlite3 in gearmand's table layout, priority 1, when_to_run 0, 10-byte payloads, 36-byte
unique ids; copied afresh each round, so the page cache is warm) and the time from starting
`geardriver server --queue FILE` until its admin `status` shows them all.

And once per run, memory: VmRSS of a fresh server, then with 100,000 background jobs queued
(submitted by 4 `gearman -b -N` clients, 10-byte payloads, unique ids made by libgearman), the
difference ÷ 100,000: the built-in server in memory, with the queue (normal), and gearmand in
memory for reference; and the queue server's RSS after the restore above.

Ratios are the median of each round's ratio (the peers measured minutes apart at most); every
round's ratio is printed too. Targets (issue 14): queue normal submits ≥ 0.8× in memory and
≥ 50× gearmand's SQLite queue; queue full ≥ 5× gearmand's SQLite queue from one client and
≥ 20× from 4; restore of 100,000 jobs < 2 s.

Usage: cargo build --release && scripts/bench_queue.py [--jobs 20000] [--slow-jobs 2000] [--rounds 3]
"""

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_drain as drain  # noqa: E402

KINDS = ["mem", "normal", "full", "gd-mem", "gd-sqlite"]
CONCURRENT = ["normal", "full", "gd-sqlite"]
CLIENTS = 4
RESTORE_JOBS = 100_000
RSS_JOBS = 100_000


class Server:
    """One job server process, started afresh; `queue` is its queue file, if any."""

    def __init__(self, kind, tmp, geardriver, tag):
        self.kind = kind
        self.queue = os.path.join(tmp, f"{kind}-{tag}.sqlite") if kind in ("normal", "full", "gd-sqlite") else None
        self.log = os.path.join(tmp, f"{kind}-{tag}.log")
        port = drain.free_port()
        if kind.startswith("gd-"):
            cmd = [drain.gearmand_binary(), "--listen=127.0.0.1", f"--port={port}", "--log-file=none",
                   f"--pid-file={tmp}/gearmand-{tag}.pid", f"--threads={drain.THREADS}"]
            if self.queue:
                cmd += ["-q", "libsqlite3", f"--libsqlite3-db={self.queue}"]
        else:
            cmd = [geardriver, "server", "--listen", f"127.0.0.1:{port}"]
            if self.queue:
                cmd += ["--queue", self.queue]
            if kind == "full":
                cmd += ["--queue-sync", "full"]
        with open(self.log, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=dict(os.environ, GEARDRIVER_LOG="warn"))
        self.proc, self.port = drain.wait_for_port(proc, port, kind)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        for suffix in ("", "-wal", "-shm", "-journal"):
            if self.queue and os.path.exists(self.queue + suffix):
                os.remove(self.queue + suffix)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def payloads(first, count):
    """10-byte workloads, one per line."""
    return "".join(f"job-{i:06d}\n" for i in range(first, first + count)).encode()


def submit(port, function, jobs, clients):
    """`clients` concurrent `gearman -b -N` clients, jobs/clients each: jobs/s."""
    per = jobs // clients
    start = time.perf_counter()
    procs = [subprocess.Popen(["gearman", "-h", "127.0.0.1", "-p", str(port), "-b", "-N", "-f", function],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(clients)]
    for i, p in enumerate(procs):
        p.stdin.write(payloads(i * per, per))
        p.stdin.close()
    for p in procs:
        if p.wait() != 0:
            sys.exit(f"a `gearman -b` client failed: {p.stderr.read().decode(errors='replace')[-500:]}")
    elapsed = time.perf_counter() - start
    return per * clients / elapsed


def wait_total(admin, function, jobs, what, timeout=120):
    deadline = time.time() + timeout
    while admin.total(function) < jobs:
        if time.time() > deadline:
            sys.exit(f"{what}: only {admin.total(function)} of {jobs} jobs queued after {timeout} s")
        time.sleep(0.01)


def submit_and_drain(server, jobs, round_no):
    function = f"q_{server.kind}_{round_no}"
    admin = drain.Admin(server.port)
    cpu0 = drain.cpu_us(server.proc.pid)
    rate = submit(server.port, function, jobs, 1)
    cpu_submit = (drain.cpu_us(server.proc.pid) - cpu0) / jobs
    wait_total(admin, function, jobs, server.kind)
    sentinel = drain.submit_sentinel(server.port, function)
    sentinel.settimeout(900)
    start = time.perf_counter()
    worker = subprocess.Popen(["gearman", "-w", "-h", "127.0.0.1", "-p", str(server.port), "-f", function],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        drain.wait_sentinel(sentinel)
        while admin.total(function) > 0:
            if time.perf_counter() - start > 900:
                sys.exit(f"{server.kind}: jobs still queued 900 s after the drain started")
            time.sleep(0.001)
        drained = (jobs + 1) / (time.perf_counter() - start)
    finally:
        worker.terminate()
        worker.wait()
        sentinel.close()
    return rate, drained, cpu_submit


def concurrent_submit(server, jobs, round_no):
    function = f"q4_{server.kind}_{round_no}"
    admin = drain.Admin(server.port)
    cpu0 = drain.cpu_us(server.proc.pid)
    rate = submit(server.port, function, jobs, CLIENTS)
    cpu = (drain.cpu_us(server.proc.pid) - cpu0) / jobs
    wait_total(admin, function, jobs // CLIENTS * CLIENTS, server.kind)
    return rate, cpu


def fsync_us(directory, count):
    """Mean and median µs of os.write(4 KiB) + os.fsync on a file in `directory`."""
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    block = b"\xa5" * 4096
    times = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            times.append((time.perf_counter() - start) * 1e6)
    finally:
        os.close(fd)
        os.remove(path)
    return statistics.mean(times), statistics.median(times)


def make_restore_file(path, jobs):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE gearman_queue (unique_key TEXT, function_name TEXT, priority INTEGER, "
               "data BLOB, when_to_run INTEGER, PRIMARY KEY (unique_key, function_name))")
    db.executemany("INSERT INTO gearman_queue VALUES (?, 'restore', 1, ?, 0)",
                   ((str(uuid.uuid4()), f"job-{i:06d}".encode()) for i in range(jobs)))
    db.commit()
    db.close()


def restore(template, tmp, geardriver, round_no):
    """Seconds from starting the server on a copy of `template` until `status` shows every job;
    and the server's VmRSS then (kB)."""
    path = os.path.join(tmp, f"restore-{round_no}.sqlite")
    shutil.copyfile(template, path)
    port = drain.free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([geardriver, "server", "--listen", f"127.0.0.1:{port}", "--queue", path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, GEARDRIVER_LOG="warn"))
    try:
        admin = None
        while True:
            if time.perf_counter() - start > 120:
                sys.exit("restore: the server did not show the jobs within 120 s")
            if proc.poll() is not None:
                sys.exit(f"restore: the server exited with {proc.returncode}")
            if admin is None:
                try:
                    admin = drain.Admin(port)
                except OSError:
                    time.sleep(0.001)
                    continue
            if admin.total("restore") >= RESTORE_JOBS:
                break
            time.sleep(0.001)
        elapsed = time.perf_counter() - start
        return elapsed, rss_kb(proc.pid)
    finally:
        proc.kill()
        proc.wait()
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)


def rss_per_job(kind, tmp, geardriver):
    """(empty kB, with RSS_JOBS queued kB, bytes per job)."""
    server = Server(kind, tmp, geardriver, "rss")
    try:
        time.sleep(0.2)
        empty = rss_kb(server.proc.pid)
        submit(server.port, "rss", RSS_JOBS, CLIENTS)
        wait_total(drain.Admin(server.port), "rss", RSS_JOBS, f"{kind} rss")
        time.sleep(0.2)
        full = rss_kb(server.proc.pid)
    finally:
        server.stop()
    return empty, full, (full - empty) * 1024 / RSS_JOBS


def ratio(a, b):
    each = [x / y for x, y in zip(a, b)]
    return {"median": statistics.median(each), "each": each}


def show(r):
    return f"{r['median']:.2f}× (rounds {', '.join(f'{x:.2f}' for x in r['each'])})"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20000, help="jobs per measurement on the fast servers")
    parser.add_argument("--slow-jobs", type=int, default=2000, help="jobs per measurement on gearmand's SQLite queue")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fsyncs", type=int, default=200)
    parser.add_argument("--dir", help="where the queue files go (default: a temporary directory under $TMPDIR)")
    parser.add_argument("--geardriver", default=os.path.join(drain.ROOT, "target", "release", "geardriver"))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if not os.path.exists(args.geardriver):
        sys.exit(f"{args.geardriver} not found: run `cargo build --release` first")
    jobs_for = {k: args.slow_jobs if k == "gd-sqlite" else args.jobs for k in KINDS}
    rates = {k: {"submit": [], "drain": [], "cpu": []} for k in KINDS}
    rates4 = {k: {"submit4": [], "cpu4": []} for k in CONCURRENT}
    fsyncs, restores, restore_rss = [], [], []
    print(f"load average at the start: {loadavg()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"queue files in {tmp}", file=sys.stderr)
        template = os.path.join(tmp, "restore-template.sqlite")
        make_restore_file(template, RESTORE_JOBS)
        for r in range(args.rounds):
            fsyncs.append(fsync_us(tmp, args.fsyncs))
            print(f"round {r + 1} fsync: mean {fsyncs[-1][0]:.0f} µs, median {fsyncs[-1][1]:.0f} µs", file=sys.stderr)
            for kind in (KINDS if r % 2 == 0 else list(reversed(KINDS))):
                server = Server(kind, tmp, args.geardriver, f"r{r}")
                try:
                    sub, drn, cpu = submit_and_drain(server, jobs_for[kind], r)
                finally:
                    server.stop()
                for key, value in (("submit", sub), ("drain", drn), ("cpu", cpu)):
                    rates[kind][key].append(value)
                print(f"round {r + 1} {kind:9} submit {sub:7.0f}/s  drain {drn:7.0f}/s  "
                      f"server CPU {cpu:7.1f} µs/submit", file=sys.stderr)
            for kind in (CONCURRENT if r % 2 == 0 else list(reversed(CONCURRENT))):
                server = Server(kind, tmp, args.geardriver, f"c{r}")
                try:
                    sub, cpu = concurrent_submit(server, jobs_for[kind], r)
                finally:
                    server.stop()
                rates4[kind]["submit4"].append(sub)
                rates4[kind]["cpu4"].append(cpu)
                print(f"round {r + 1} {kind:9} submit ×{CLIENTS} {sub:7.0f}/s  server CPU {cpu:7.1f} µs/submit",
                      file=sys.stderr)
            elapsed, kb = restore(template, tmp, args.geardriver, r)
            restores.append(elapsed)
            restore_rss.append(kb)
            print(f"round {r + 1} restore {RESTORE_JOBS}: {elapsed:.3f} s, RSS {kb / 1024:.1f} MB", file=sys.stderr)
        memory = {}
        for kind in ("mem", "normal", "gd-mem"):
            memory[kind] = rss_per_job(kind, tmp, args.geardriver)
            e, f, per = memory[kind]
            print(f"rss {kind:9} empty {e / 1024:.1f} MB, {RSS_JOBS} queued {f / 1024:.1f} MB: {per:.0f} B/job",
                  file=sys.stderr)
        fsyncs.append(fsync_us(tmp, args.fsyncs))
    print(f"load average at the end: {loadavg()}", file=sys.stderr)

    med = {k: {key: statistics.median(v) for key, v in d.items()} for k, d in rates.items()}
    med4 = {k: {key: statistics.median(v) for key, v in d.items()} for k, d in rates4.items()}
    fsync_mean = statistics.median(m for m, _ in fsyncs)
    fsync_median = statistics.median(m for _, m in fsyncs)
    restore_s = statistics.median(restores)
    r_norm_mem = ratio(rates["normal"]["submit"], rates["mem"]["submit"])
    r_norm_gd = ratio(rates["normal"]["submit"], rates["gd-sqlite"]["submit"])
    r_full_gd = ratio(rates["full"]["submit"], rates["gd-sqlite"]["submit"])
    r_full4_gd = ratio(rates4["full"]["submit4"], rates4["gd-sqlite"]["submit4"])
    r_norm4_gd = ratio(rates4["normal"]["submit4"], rates4["gd-sqlite"]["submit4"])

    print("### Targets\n")
    print("| target | measured | |")
    print("|---|---:|---|")
    for label, r, goal in (("queue normal submits ≥ 0.8× in-memory built-in (1 client)", r_norm_mem, 0.8),
                           ("queue normal submits ≥ 50× gearmand + SQLite (1 client)", r_norm_gd, 50),
                           ("queue full submits ≥ 5× gearmand + SQLite (1 client)", r_full_gd, 5),
                           (f"queue full submits ≥ 20× gearmand + SQLite ({CLIENTS} clients)", r_full4_gd, 20)):
        print(f"| {label} | {show(r)} | {'met' if r['median'] >= goal else 'missed'} |")
    print(f"| restore of {RESTORE_JOBS:,} jobs < 2 s | {restore_s:.3f} s (rounds "
          f"{', '.join(f'{x:.3f}' for x in restores)}) | {'met' if restore_s < 2 else 'missed'} |")
    print(f"\nFor reference: queue normal ÷ gearmand + SQLite with {CLIENTS} clients: {show(r_norm4_gd)}; "
          f"queue full ÷ in memory (1 client): {show(ratio(rates['full']['submit'], rates['mem']['submit']))}; "
          f"gearmand + SQLite ÷ gearmand in memory: "
          f"{show(ratio(rates['gd-sqlite']['submit'], rates['gd-mem']['submit']))}.\n")

    print(f"### Rates (median of {args.rounds}; min – max)\n")
    print(f"| server | jobs | submit, 1 client (jobs/s) | drain, 1 C worker (jobs/s) | submit, {CLIENTS} clients (jobs/s) "
          f"| server CPU per submit, 1 / {CLIENTS} clients |")
    print("|---|---:|---:|---:|---:|---:|")
    for kind in KINDS:
        d = rates[kind]
        s4 = (f"{med4[kind]['submit4']:.0f} ({min(rates4[kind]['submit4']):.0f} – {max(rates4[kind]['submit4']):.0f})"
              if kind in med4 else "–")
        c4 = f" / {med4[kind]['cpu4']:.1f}" if kind in med4 else ""
        print(f"| {kind} | {jobs_for[kind]:,} | {med[kind]['submit']:.0f} ({min(d['submit']):.0f} – {max(d['submit']):.0f}) "
              f"| {med[kind]['drain']:.0f} ({min(d['drain']):.0f} – {max(d['drain']):.0f}) | {s4} "
              f"| {med[kind]['cpu']:.1f}{c4} µs |")
    print(f"\nfsync (os.write 4 KiB + os.fsync, {args.fsyncs} per sample, {len(fsyncs)} samples: one per round and one at the end): "
          f"mean {fsync_mean:.0f} µs (samples {', '.join(f'{m:.0f}' for m, _ in fsyncs)}), "
          f"median {fsync_median:.0f} µs")
    print(f"restore of {RESTORE_JOBS:,} jobs (start → `status` shows them all): median {restore_s:.3f} s, "
          f"rounds {', '.join(f'{x:.3f}' for x in restores)}; RSS then {statistics.median(restore_rss) / 1024:.1f} MB")
    print(f"\n| RSS, {RSS_JOBS:,} jobs of 10 bytes | empty | {RSS_JOBS:,} queued | per job |")
    print("|---|---:|---:|---:|")
    for kind, (e, f, per) in memory.items():
        print(f"| {kind} | {e / 1024:.1f} MB | {f / 1024:.1f} MB | {per:.0f} B |")
    e = memory["normal"][0]
    print(f"| normal, restored from the file | {e / 1024:.1f} MB (the `normal` row's) | "
          f"{statistics.median(restore_rss) / 1024:.1f} MB | {(statistics.median(restore_rss) - e) * 1024 / RESTORE_JOBS:.0f} B |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rates": rates, "concurrent": rates4, "fsync_us": fsyncs, "restore_s": restores,
                       "restore_rss_kb": restore_rss, "rss_kb": memory,
                       "ratios": {"normal/mem": r_norm_mem, "normal/gd-sqlite": r_norm_gd,
                                  "full/gd-sqlite": r_full_gd, "full4/gd-sqlite4": r_full4_gd,
                                  "normal4/gd-sqlite4": r_norm4_gd}}, f, indent=1)


if __name__ == "__main__":
    main()
