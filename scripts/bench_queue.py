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
  normal   - `geardriver server --queue FILE` (the default: an append to the queue's log per
             group commit, applied to the table every 20 ms)
  full     - `geardriver server --queue FILE --queue-sync full` (an fsync per group commit)
  gd-mem   - gearmand, no queue
  gd-sqlite - gearmand `-q libsqlite3 --libsqlite3-db FILE` (one commit per job)

The fast servers run --jobs jobs; gearmand's SQLite queue is slow, so it runs --slow-jobs,
and so, in the same rounds, do the fast servers: the C client's cost per job grows with the
number of jobs it has sent (libgearman walks its whole task list, finished background tasks
included, for each new one: 20,000 lines cost it ~7 s of CPU, 2,000 ~0.05 s), so a rate from
one `gearman -b -N` depends on N and only rates at the same N compare. The ratios to gearmand's
SQLite queue are taken at --slow-jobs. submit4 runs on normal, full and gd-sqlite only.

The drain rates move with how deeply the machine's idle CPUs sleep between jobs (a drain is one
job at a time, two wake-ups each): on the 2-vCPU VM of 2026-11-30, a busy-looping process beside
an in-memory drain made it ~6× faster, and `full`'s writer thread, busy with fsyncs while the
drain deletes rows, has the same effect; read them as "not slower", not as speed-ups.

  batches  - the same servers from a bulk producer: a C client on libgearman's task API
             (scripts/bulk_submit/bulk_submit.c, built by this script: needs cc and
             libgearman-dev) adds --batch background tasks and runs them (all sent, then
             their JOB_CREATED read), batch after batch; 1 and 4 such clients, each timing
             its own submits after it has connected. The `gearman -b` client
             above keeps one job in flight, so a group commit can hold at most one job per
             client; here a batch's jobs arrive together. Its cost per job does not grow with
             the count (each batch's tasks are freed), so the fast servers run --batch-jobs
             and gearmand's SQLite queue --slow-jobs.

Each round also times the machine's fsync (--fsyncs writes of 4 KiB, each followed by
os.fsync, to a file in the queue files' directory): what one durable commit costs at least,
which sets the pace of `full` and of gearmand's queue.

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

With --slow-fsync US every process of the run (servers, probe) gets US µs added to each fsync
and fdatasync (an LD_PRELOAD shim, scripts/slow_fsync): what a slower disk does to the durable
servers, measured on a fast one.

Needs gearmand, gearman-tools, cc and libgearman-dev.

Usage: cargo build --release && scripts/bench_queue.py [--jobs 20000] [--slow-jobs 2000] [--rounds 3]
       [--batch 100] [--batch-jobs 20000] [--geardriver PATH] [--dir DIR] [--json FILE] [--slow-fsync US]
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


def build_bulk_client(tmp):
    """Builds scripts/bulk_submit (the C bulk producer) into `tmp`; its path."""
    source = os.path.join(drain.ROOT, "scripts", "bulk_submit", "bulk_submit.c")
    binary = os.path.join(tmp, "bulk_submit")
    built = subprocess.run(["cc", "-O2", "-o", binary, source, "-lgearman"], capture_output=True, text=True)
    if built.returncode != 0:
        sys.exit(f"cannot build {source} (apt-get install libgearman-dev):\n{built.stderr[-1000:]}")
    return binary


def submit_batches(client, port, function, jobs, clients, batch):
    """`clients` concurrent bulk producers (the C `client`), jobs/clients each in batches of
    `batch`: jobs/s from the first one's start to the last one's end."""
    per = jobs // clients
    procs = [subprocess.Popen([client, str(port), function, str(i * per), str(per), str(batch)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(clients)]
    time.sleep(0.1)  # each connects
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    spans = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        if p.returncode != 0:
            sys.exit(f"a batch client failed: {err[-500:]}")
        spans.append([float(x) for x in out.split()])
    return per * clients / (max(e for _, e in spans) - min(s for s, _ in spans))


def batched_submit(client, server, jobs, clients, batch, round_no):
    function = f"qb{clients}_{server.kind}_{jobs}_{round_no}"
    admin = drain.Admin(server.port)
    cpu0 = drain.cpu_us(server.proc.pid)
    rate = submit_batches(client, server.port, function, jobs, clients, batch)
    cpu = (drain.cpu_us(server.proc.pid) - cpu0) / jobs
    wait_total(admin, function, jobs // clients * clients, server.kind)
    return rate, cpu


def wait_total(admin, function, jobs, what, timeout=120):
    deadline = time.time() + timeout
    while admin.total(function) < jobs:
        if time.time() > deadline:
            sys.exit(f"{what}: only {admin.total(function)} of {jobs} jobs queued after {timeout} s")
        time.sleep(0.01)


def submit_and_drain(server, jobs, round_no):
    function = f"q_{server.kind}_{jobs}_{round_no}"
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
    function = f"q4_{server.kind}_{jobs}_{round_no}"
    admin = drain.Admin(server.port)
    cpu0 = drain.cpu_us(server.proc.pid)
    rate = submit(server.port, function, jobs, CLIENTS)
    cpu = (drain.cpu_us(server.proc.pid) - cpu0) / jobs
    wait_total(admin, function, jobs // CLIENTS * CLIENTS, server.kind)
    return rate, cpu


FSYNC_PROBE = """
import os, statistics, sys, time
path, count = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
block = b"\\xa5" * 4096
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
print(statistics.mean(times), statistics.median(times))
"""


def fsync_us(directory, count):
    """Mean and median µs of os.write(4 KiB) + os.fsync on a file in `directory` (in a child
    process, so that --slow-fsync's shim applies to it as to the servers)."""
    out = subprocess.run([sys.executable, "-c", FSYNC_PROBE, os.path.join(directory, "fsync-probe"), str(count)],
                         check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def slow_fsync(delay_us, tmp):
    """Builds scripts/slow_fsync and puts it under every process this run starts: each fsync
    and fdatasync takes `delay_us` longer, for servers and probe alike (a slow disk, simulated
    the same for all)."""
    source = os.path.join(drain.ROOT, "scripts", "slow_fsync", "slow_fsync.c")
    shim = os.path.join(tmp, "slow_fsync.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", shim, source, "-ldl"], check=True)
    os.environ["LD_PRELOAD"] = shim
    os.environ["FSYNC_DELAY_US"] = str(delay_us)


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


def spread(values):
    return f"{statistics.median(values):.0f} ({min(values):.0f} – {max(values):.0f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20000, help="jobs per measurement on the fast servers")
    parser.add_argument("--slow-jobs", type=int, default=2000,
                        help="jobs per measurement on gearmand's SQLite queue, and on every server for the like-for-like set")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fsyncs", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100, help="jobs per batch of the bulk producers")
    parser.add_argument("--batch-jobs", type=int, default=20000, help="jobs per bulk-producer measurement on the fast servers")
    parser.add_argument("--dir", help="where the queue files go (default: a temporary directory under $TMPDIR)")
    parser.add_argument("--geardriver", default=os.path.join(drain.ROOT, "target", "release", "geardriver"))
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--slow-fsync", type=int, metavar="US",
                        help="add US µs to every fsync/fdatasync of every process (scripts/slow_fsync): "
                             "a slow disk's cost, the same for every server")
    args = parser.parse_args()
    if args.slow_fsync:
        slow_fsync(args.slow_fsync, tempfile.mkdtemp(prefix="slow-fsync-"))
    if not os.path.exists(args.geardriver):
        sys.exit(f"{args.geardriver} not found: run `cargo build --release` first")
    big, small = args.jobs, args.slow_jobs
    sizes = sorted({big, small}, reverse=True)
    # (server, jobs): the fast servers at both sizes, gearmand's SQLite queue at the small one.
    single = [(k, n) for n in sizes for k in KINDS if not (k == "gd-sqlite" and n != small)]
    concurrent = [(k, n) for n in sizes for k in CONCURRENT if not (k == "gd-sqlite" and n != small)]
    one = {c: {"submit": [], "drain": [], "cpu": []} for c in single}
    four = {c: {"submit": [], "cpu": []} for c in concurrent}
    batched = [(k, args.slow_jobs if k == "gd-sqlite" else args.batch_jobs, c) for k in KINDS for c in (1, CLIENTS)]
    bulk = {c: {"submit": [], "cpu": []} for c in batched}
    fsyncs, restores, restore_rss = [], [], []
    print(f"load average at the start: {loadavg()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"queue files in {tmp}", file=sys.stderr)
        bulk_client = build_bulk_client(tmp)
        template = os.path.join(tmp, "restore-template.sqlite")
        make_restore_file(template, RESTORE_JOBS)
        for r in range(args.rounds):
            fsyncs.append(fsync_us(tmp, args.fsyncs))
            print(f"round {r + 1} fsync: mean {fsyncs[-1][0]:.0f} µs, median {fsyncs[-1][1]:.0f} µs", file=sys.stderr)
            # Alternate the order so no server always runs first (or last).
            for kind, n in (single if r % 2 == 0 else list(reversed(single))):
                server = Server(kind, tmp, args.geardriver, f"r{r}-{n}")
                try:
                    sub, drn, cpu = submit_and_drain(server, n, r)
                finally:
                    server.stop()
                for key, value in (("submit", sub), ("drain", drn), ("cpu", cpu)):
                    one[(kind, n)][key].append(value)
                print(f"round {r + 1} {kind:9} {n:6} jobs, 1 client:  submit {sub:7.0f}/s  drain {drn:7.0f}/s  "
                      f"server CPU {cpu:6.1f} µs/submit", file=sys.stderr)
            for kind, n in (concurrent if r % 2 == 0 else list(reversed(concurrent))):
                server = Server(kind, tmp, args.geardriver, f"c{r}-{n}")
                try:
                    sub, cpu = concurrent_submit(server, n, r)
                finally:
                    server.stop()
                four[(kind, n)]["submit"].append(sub)
                four[(kind, n)]["cpu"].append(cpu)
                print(f"round {r + 1} {kind:9} {n:6} jobs, {CLIENTS} clients: submit {sub:7.0f}/s  "
                      f"server CPU {cpu:6.1f} µs/submit", file=sys.stderr)
            for kind, n, clients in (batched if r % 2 == 0 else list(reversed(batched))):
                server = Server(kind, tmp, args.geardriver, f"b{r}-{clients}")
                try:
                    sub, cpu = batched_submit(bulk_client, server, n, clients, args.batch, r)
                finally:
                    server.stop()
                bulk[(kind, n, clients)]["submit"].append(sub)
                bulk[(kind, n, clients)]["cpu"].append(cpu)
                print(f"round {r + 1} {kind:9} {n:6} jobs, {clients} bulk client(s), batches of {args.batch}: "
                      f"submit {sub:7.0f}/s  server CPU {cpu:6.1f} µs/submit", file=sys.stderr)
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

    def s1(kind, n):
        return one[(kind, n)]["submit"]

    def s4(kind, n):
        return four[(kind, n)]["submit"]

    restore_s = statistics.median(restores)
    targets = [
        (f"queue normal submits ≥ 0.8× in-memory built-in (1 client, {big:,} jobs)",
         ratio(s1("normal", big), s1("mem", big)), 0.8),
        (f"queue normal submits ≥ 50× gearmand + SQLite (1 client, {small:,} jobs each)",
         ratio(s1("normal", small), s1("gd-sqlite", small)), 50),
        (f"queue full submits ≥ 5× gearmand + SQLite (1 client, {small:,} jobs each)",
         ratio(s1("full", small), s1("gd-sqlite", small)), 5),
        (f"queue full submits ≥ 20× gearmand + SQLite ({CLIENTS} clients, {small:,} jobs each)",
         ratio(s4("full", small), s4("gd-sqlite", small)), 20),
    ]
    if big != small:
        targets.insert(1, (f"the same at {small:,} jobs (the C client's own cost per job is lower)",
                           ratio(s1("normal", small), s1("mem", small)), 0.8))
    print("### Targets\n")
    print("| target | measured (median of the rounds' ratios) | |")
    print("|---|---:|---|")
    for label, r, goal in targets:
        print(f"| {label} | {show(r)} | {'met' if r['median'] >= goal else 'missed'} |")
    print(f"| restore of {RESTORE_JOBS:,} jobs < 2 s | {restore_s:.3f} s (rounds "
          f"{', '.join(f'{x:.3f}' for x in restores)}) | {'met' if restore_s < 2 else 'missed'} |")
    extra = []
    if big != small:
        extra += [(f"queue normal ({big:,}) ÷ gearmand + SQLite ({small:,}), 1 client", ratio(s1("normal", big), s1("gd-sqlite", small))),
                  (f"queue full ({big:,}) ÷ gearmand + SQLite ({small:,}), 1 client", ratio(s1("full", big), s1("gd-sqlite", small))),
                  (f"queue full ({big:,}) ÷ gearmand + SQLite ({small:,}), {CLIENTS} clients", ratio(s4("full", big), s4("gd-sqlite", small)))]
    extra += [(f"queue normal ÷ gearmand + SQLite, {CLIENTS} clients, {small:,} jobs", ratio(s4("normal", small), s4("gd-sqlite", small))),
              (f"queue full ÷ in memory, 1 client, {small:,} jobs", ratio(s1("full", small), s1("mem", small))),
              (f"gearmand + SQLite ÷ gearmand in memory, 1 client, {small:,} jobs", ratio(s1("gd-sqlite", small), s1("gd-mem", small)))]

    def sb(kind, clients):
        return next(v["submit"] for (k, _, c), v in bulk.items() if k == kind and c == clients)

    n_fast, n_slow = args.batch_jobs, args.slow_jobs
    bulk_targets = [
        (f"queue normal ≥ 0.8× in-memory built-in (1 bulk client, {n_fast:,} jobs)", ratio(sb("normal", 1), sb("mem", 1)), 0.8),
        (f"queue normal ≥ 50× gearmand + SQLite (1 bulk client, {n_fast:,} and {n_slow:,} jobs)",
         ratio(sb("normal", 1), sb("gd-sqlite", 1)), 50),
        (f"queue full ≥ 5× gearmand + SQLite (1 bulk client, {n_fast:,} and {n_slow:,} jobs)",
         ratio(sb("full", 1), sb("gd-sqlite", 1)), 5),
        (f"queue full ≥ 20× gearmand + SQLite ({CLIENTS} bulk clients, {n_fast:,} and {n_slow:,} jobs)",
         ratio(sb("full", CLIENTS), sb("gd-sqlite", CLIENTS)), 20),
    ]
    print(f"\n### The same targets from bulk producers (C, libgearman's task API, batches of {args.batch})\n")
    print("| target | measured (median of the rounds' ratios) | |")
    print("|---|---:|---|")
    for label, r, goal in bulk_targets:
        print(f"| {label} | {show(r)} | {'met' if r['median'] >= goal else 'missed'} |")
    print(f"\n| server | jobs | submit, 1 bulk client | submit, {CLIENTS} bulk clients | server CPU per submit, 1 / {CLIENTS} clients |")
    print("|---|---:|---:|---:|---:|")
    for kind in KINDS:
        n = n_slow if kind == "gd-sqlite" else n_fast
        a, b = bulk[(kind, n, 1)], bulk[(kind, n, CLIENTS)]
        print(f"| {kind} | {n:,} | {spread(a['submit'])} | {spread(b['submit'])} | "
              f"{statistics.median(a['cpu']):.1f} / {statistics.median(b['cpu']):.1f} µs |")
    print("\nOther ratios:\n")
    for label, r in extra:
        print(f"- {label}: {show(r)}")

    print(f"\n### Rates, jobs/s (median of {args.rounds}; min – max)\n")
    print("| server | jobs | submit, 1 client | drain, 1 C worker | "
          f"submit, {CLIENTS} clients | server CPU per submit, 1 / {CLIENTS} clients |")
    print("|---|---:|---:|---:|---:|---:|")
    for n in sizes:
        for kind in KINDS:
            if (kind, n) not in one:
                continue
            d = one[(kind, n)]
            c = four.get((kind, n))
            print(f"| {kind} | {n:,} | {spread(d['submit'])} | {spread(d['drain'])} | "
                  f"{spread(c['submit']) if c else '–'} | {statistics.median(d['cpu']):.1f}"
                  f"{' / %.1f' % statistics.median(c['cpu']) if c else ''} µs |")
    print(f"\nfsync (os.write 4 KiB + os.fsync in the queue files' directory, {args.fsyncs} per sample, one sample "
          f"per round and one at the end): mean {statistics.median(m for m, _ in fsyncs):.0f} µs "
          f"(samples {', '.join(f'{m:.0f}' for m, _ in fsyncs)}), median {statistics.median(m for _, m in fsyncs):.0f} µs")
    print(f"restore of {RESTORE_JOBS:,} jobs (start → `status` shows them all): median {restore_s:.3f} s, "
          f"rounds {', '.join(f'{x:.3f}' for x in restores)}; RSS then {statistics.median(restore_rss) / 1024:.1f} MB")
    print(f"\n| RSS, {RSS_JOBS:,} jobs of 10 bytes | empty | {RSS_JOBS:,} queued | per job |")
    print("|---|---:|---:|---:|")
    for kind, (e, f, per) in memory.items():
        print(f"| {kind} | {e / 1024:.1f} MB | {f / 1024:.1f} MB | {per:.0f} B |")
    e = memory["normal"][0]
    print(f"| normal, restored from the file | {e / 1024:.1f} MB (as above) | "
          f"{statistics.median(restore_rss) / 1024:.1f} MB | {(statistics.median(restore_rss) - e) * 1024 / RESTORE_JOBS:.0f} B |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"one_client": {f"{k}@{n}": v for (k, n), v in one.items()},
                       "clients4": {f"{k}@{n}": v for (k, n), v in four.items()},
                       "bulk": {f"{k}@{n}x{c}": v for (k, n, c), v in bulk.items()},
                       "bulk_targets": [(label, r["median"], r["each"], goal) for label, r, goal in bulk_targets],
                       "fsync_us": fsyncs, "restore_s": restores, "restore_rss_kb": restore_rss, "rss_kb": memory,
                       "targets": [(label, r["median"], r["each"], goal) for label, r, goal in targets]}, f, indent=1)


if __name__ == "__main__":
    main()
