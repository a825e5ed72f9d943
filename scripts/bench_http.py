#!/usr/bin/env python3
"""The HTTP endpoint (/metrics, /api/status) with many processes, and what the figures behind
it cost the job throughput, against the host before the feature (a51ea78), in one run.

1. Latency with --processes processes (default 500: 10 echo jobs of 50 processes, min = max,
   autoscaling off), once per server in --latency-servers:

     builtin  - the host runs its own job server ([server] enabled, in memory), so /metrics
                and /api/status also carry its per-function figures (10 functions)
     gearmand - the processes work for a gearmand (--threads 1 unless --gearmand-threads)

   The host is started, and /api/status polled (every 0.5 s) until its jobs show --processes
   processes, all of them idle. Then, for /metrics, /api/status and /api/processes (the last
   without a target: the biggest reply, a row per process):
     - first: one GET on a new connection (connect + request + whole body), the first of
       that endpoint since the host started;
     - new conn: --fresh more GETs, each on a new connection (median and max);
     - keep-alive: --samples GETs one after another on one persistent connection
       (http.client), timed from sending the request to having read the whole body:
       p50, p99 (nearest rank) and max.
   Target (issue): p99 of /metrics and of /api/status < 20 ms (p50 shown as well).

2. Throughput cost of the figures (the job-duration histogram each worker process writes to
   the stats table in shared memory after each job, the built-in server's per-function
   counters, and the HTTP endpoint being scraped). Echo drains by the host's own processes,
   for each server (gearmand: one for the whole run, --threads 1, the same for every variant;
   builtin: the host's own, started afresh with the host) and each process count in
   --process-counts (1 and 4), by these variants:

     base    - the --baseline binary (a51ea78, before the feature); no [http] section
     cur     - the --geardriver binary, [http] listening, nobody asks it anything
     scrape  - the same, with GET /metrics every --scrape-interval s (1 s: an eager
               Prometheus, on a persistent connection, from a separate process started with
               the host) during the submit and the drain
     nohttp  - the current binary with [http] listen = "": the figures are still kept,
               nobody can read them (tells the histogram's cost from the endpoint's)
     again   - (only with --variants …,again) the baseline once more: an A/A control,
               whose ratio to base is the noise floor of the ratios above

   Each measurement: a fresh host with the echo job at min_processes = 0, max = P, autoscaling
   off (interval = 0), console on; N background jobs submitted with the C client
   (`gearman -b -N`, in chunks of 5,000 lines run side by side: libgearman's cost per line
   grows with the lines it has sent), then one LOW-priority foreground sentinel; `status`
   shows them all queued. Then the clock starts, the console's `set_min_processes JOB P`
   starts the P processes, and the clock stops when the sentinel has completed and `status`
   shows nothing left. Rate = (N + 1) / time; also the CPU time of the host and its worker
   processes (and of gearmand, for that server) per job, from /proc/PID/task/*/schedstat
   (nanoseconds): the cost, less blurred by the job server's and the machine's pace.

   The job server, the hosts and their worker processes are pinned to one CPU (--cpu, the
   last by default; this script, the C clients and the scraper to the others): on the 2-vCPU VM of
   2026-11-30, left to the scheduler, the same 1-process drain ran at either ~8,000 or
   ~60,000 jobs/s (and 45 or 6 µs of CPU per job) depending on whether the other vCPU was
   idle or busy with someone else's work: a wake-up across vCPUs costs that much there.
   On one CPU the rate is the CPU cost of a job plus whatever else runs on that CPU: the
   share of that CPU others used during each drain is printed with each round (roughly:
   /proc/stat's ticks of the CPU less our processes' schedstat time).

   Rounds alternate the order of the variants (base, cur, scrape, nohttp, then reversed), so base
   and current run back to back, ABAB…; the ratio current ÷ base is taken per round (the two
   ran seconds apart), and the median of the rounds' ratios is reported with every round's.
   Target (issue): ≥ 0.97× without the figures, for cur and for scrape.

   The two binaries differ by everything between a51ea78 and the current commit, not only
   the HTTP endpoint (also max_memory, checked once a second and skipped for jobs without
   it, and sd_notify).

The machine this runs on may be shared: the load average at the start, between the parts and
at the end is printed (and in --json). Even pinned, a drain on the 2-vCPU VM moved by ±10 %
from round to round, so read a ratio within a few % of 1 as "no measurable cost", and look
at the rounds' ratios and the CPU per job before calling a target missed.

The baseline: git clone -q . /tmp/base && cd /tmp/base && git checkout -q a51ea78 &&
CARGO_TARGET_DIR=/tmp/base-target cargo build --release  (then --baseline /tmp/base-target/release/geardriver).

Usage: cargo build --release && scripts/bench_http.py --baseline /path/to/a51ea78/geardriver
       [--processes 500] [--samples 200] [--fresh 20] [--latency-servers builtin,gearmand]
       [--jobs 50000] [--rounds 3] [--process-counts 1,4] [--servers gearmand,builtin]
       [--variants base,cur,scrape,nohttp] [--scrape-interval 1] [--gearmand-threads 1]
       [--cpu N|none] [--geardriver PATH] [--skip-latency] [--skip-throughput] [--json FILE]
"""

import argparse
import http.client
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_drain as drain  # noqa: E402

TARGET_MS = 20.0
TARGET_RATIO = 0.97
CHUNK = 5000
ENDPOINTS = ["/metrics", "/api/status", "/api/processes"]
TARGETED = ("/metrics", "/api/status")

SCRAPER = r"""
import http.client, json, signal, sys, time
port, interval = int(sys.argv[1]), float(sys.argv[2])
class Stop(Exception):
    pass
def stop(*_):
    raise Stop
signal.signal(signal.SIGTERM, stop)
times, errors, conn = [], 0, None
next_at = time.monotonic()
try:
    while True:
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            start = time.perf_counter()
            conn.request("GET", "/metrics")
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors += 1
            times.append((time.perf_counter() - start) * 1000)
        except (OSError, http.client.HTTPException):
            errors += 1
            conn = None
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
except Stop:
    pass
print(json.dumps({"times_ms": times, "errors": errors}), flush=True)
"""


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def log(text):
    print(text, file=sys.stderr, flush=True)


def percentile(values, p):
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def cpu_us(pid):
    """CPU time a process's threads (those alive now) have run, µs, to the nanosecond
    (/proc/PID/task/*/schedstat; /proc/PID/stat counts in clock ticks, 10 ms)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1000


def pinned(cpu):
    """A preexec_fn that pins the child (and so all its children) to `cpu`, or None."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def start_gearmand(tmp, threads, cpu=None):
    port = drain.free_port()
    proc = subprocess.Popen([drain.gearmand_binary(), "--listen=127.0.0.1", f"--port={port}", "--log-file=none",
                             f"--pid-file={tmp}/gearmand-{port}.pid", f"--threads={threads}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pinned(cpu))
    return drain.wait_for_port(proc, port, "gearmand")


class Console:
    """The host's console, one connection."""

    def __init__(self, port, deadline):
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                return
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("the host's console did not come up")
                time.sleep(0.02)

    def ask(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        reply = b""
        while not (reply.endswith(b"\r\n.\r\n") or reply == b".\r\n"):
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("the console closed the connection")
            reply += chunk
        text = reply.decode()
        if text.startswith("ERR"):
            raise RuntimeError(f"console: {line!r} answered {text.strip()}")
        return text

    def close(self):
        self.sock.close()


class Host:
    """`geardriver run` with a config written for it; `http` is None (no [http] section: the
    baseline), "" (off) or a port."""

    def __init__(self, binary, tmp, tag, jobs, job_server=None, http=None, cpu=None):
        self.tmp, self.tag = tmp, tag
        self.console_port = drain.free_port()
        self.http_port = http or None
        self.server_port = drain.free_port() if job_server is None else None
        servers = f"127.0.0.1:{job_server or self.server_port}"
        self.config = os.path.join(tmp, f"{tag}.toml")
        with open(self.config, "w") as f:
            f.write(f'[driver]\njob_servers = ["{servers}"]\ninterval = 0\nshutdown_timeout = 5\n'
                    f'logfile = "{tmp}/{tag}.log"\n'
                    f'[console]\nlisten = "127.0.0.1:{self.console_port}"\n')
            if http is not None:
                f.write(f'[http]\nlisten = "{"127.0.0.1:%d" % http if http else ""}"\n')
            if self.server_port:
                f.write(f'[server]\nenabled = true\nlisten = "127.0.0.1:{self.server_port}"\nqueue = ""\n')
            for name, low, high in jobs:
                f.write(f'[[jobs]]\nname = "{name}"\nworker = "echo"\nmin_processes = {low}\n'
                        f'max_processes = {high}\n')
        self.proc = subprocess.Popen([binary, "run", "--config", self.config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pinned(cpu))
        deadline = time.time() + 30
        try:
            self.console = Console(self.console_port, deadline)
            for port in (self.server_port, self.http_port):
                if port:
                    self.wait_port(port, deadline)
        except BaseException:
            self.stop()
            raise

    def wait_port(self, port, deadline):
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the host exited with {self.proc.returncode}; see {self.tmp}/{self.tag}.log")
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                return
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"port {port} of the host did not come up")
                time.sleep(0.02)

    def pids(self):
        return [self.proc.pid] + drain.children(self.proc.pid)

    def cpu_us(self):
        return sum(cpu_us(p) for p in self.pids())

    def stop(self):
        console = getattr(self, "console", None)
        if console:
            console.close()
        kids = drain.children(self.proc.pid)
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        # Whatever the host left behind (it should leave nothing).
        for pid in kids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


class HTTP:
    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path):
        """(ms, body) of one GET on the persistent connection."""
        start = time.perf_counter()
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - start) * 1000
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
        return elapsed, body

    def fresh(self, path):
        """(ms, body) of one GET on a new connection (connect included)."""
        start = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        return (time.perf_counter() - start) * 1000, body


# ---------------------------------------------------------------------------------------------
# 1. Latency


def latency(args, server, tmp, gearmand_port):
    n, jobs = args.processes, args.latency_jobs
    per = n // jobs
    host = Host(args.geardriver, tmp, f"latency-{server}", [(f"lat{j:02}", per, per) for j in range(jobs)],
                job_server=gearmand_port if server == "gearmand" else None, http=drain.free_port())
    result = {"server": server, "processes": per * jobs, "jobs": jobs}
    try:
        start = time.perf_counter()
        client = HTTP(host.http_port)
        deadline = time.time() + 600
        while True:
            _, body = client.get("/api/status")
            status = json.loads(body)
            processes = sum(j["processes"] for j in status["jobs"])
            idle = sum(j["idle"] for j in status["jobs"])
            if processes == per * jobs and idle == per * jobs:
                break
            if time.time() > deadline:
                raise RuntimeError(f"{server}: {processes} processes, {idle} idle after 600 s")
            time.sleep(0.5)
        result["up_s"] = time.perf_counter() - start
        result["load_before"] = loadavg()
        log(f"latency {server}: {per * jobs} processes idle after {result['up_s']:.1f} s (load {loadavg()})")
        client.conn.close()
        for path in ENDPOINTS:
            first, body = client.fresh(path)
            fresh = [client.fresh(path)[0] for _ in range(args.fresh)]
            client = HTTP(host.http_port)
            client.get(path)  # opens the persistent connection; not counted
            times = []
            for _ in range(args.samples):
                ms, body = client.get(path)
                times.append(ms)
            client.conn.close()
            result[path] = {"bytes": len(body), "first_ms": first, "fresh_ms": fresh, "times_ms": times,
                            "p50": statistics.median(times), "p99": percentile(times, 99), "max": max(times)}
            if path == "/metrics":
                text = body.decode()
                result[path]["lines"] = text.count("\n")
                result["metrics_idle"] = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                                             if line.startswith("geardriver_processes{") and 'state="idle"' in line)
            log(f"latency {server} {path}: {len(body)} bytes, first {first:.2f} ms, p50 "
                f"{result[path]['p50']:.2f} ms, p99 {result[path]['p99']:.2f} ms, max {max(times):.2f} ms")
        result["host_rss_kb"] = drain.peak_rss_kb(host.proc.pid)
        result["load_after"] = loadavg()
    finally:
        host.stop()
    return result


# ---------------------------------------------------------------------------------------------
# 2. Throughput


def submit(port, function, jobs):
    """N background jobs with `gearman -b -N`, CHUNK lines per client, the clients side by side."""
    procs = []
    for first in range(0, jobs, CHUNK):
        count = min(CHUNK, jobs - first)
        p = subprocess.Popen(["gearman", "-h", "127.0.0.1", "-p", str(port), "-b", "-N", "-f", function],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        p.stdin.write("".join(f"job-{i:06d}\n" for i in range(first, first + count)).encode())
        p.stdin.close()
        procs.append(p)
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"`gearman -b` failed: {p.stderr.read().decode(errors='replace')[-300:]}")


def measure(args, variant, server, processes, round_no, tmp, gearmand):
    function = f"echo_{variant}_{server}_{processes}_{round_no}"
    binary = args.baseline if variant in ("base", "again") else args.geardriver
    http = None if variant in ("base", "again") else ("" if variant == "nohttp" else drain.free_port())
    gearmand_proc, gearmand_port = gearmand if server == "gearmand" else (None, None)
    host = Host(binary, tmp, function, [(function, 0, processes)], job_server=gearmand_port, http=http, cpu=args.cpu)
    scraper = None
    try:
        port = gearmand_port or host.server_port
        if variant == "scrape":
            scraper = subprocess.Popen([sys.executable, "-c", SCRAPER, str(host.http_port), str(args.scrape_interval)],
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        admin = drain.Admin(port)
        submit(port, function, args.jobs)
        deadline = time.time() + 120
        while admin.total(function) < args.jobs:
            if time.time() > deadline:
                raise RuntimeError(f"{function}: only {admin.total(function)} of {args.jobs} jobs queued")
            time.sleep(0.01)
        sentinel = drain.submit_sentinel(port, function)
        sentinel.settimeout(600)
        cpu_host = host.cpu_us()
        cpu_gearmand = cpu_us(gearmand_proc.pid) if gearmand_proc else 0.0
        machine = cpu_stat(args.cpu)
        start = time.perf_counter()
        host.console.ask(f"set_min_processes {function} {processes}")
        drain.wait_sentinel(sentinel)
        while admin.total(function) > 0:
            if time.perf_counter() - start > 600:
                raise RuntimeError(f"{function}: jobs still queued 600 s after the start")
            time.sleep(0.001)
        elapsed = time.perf_counter() - start
        machine = [b - a for a, b in zip(machine, cpu_stat(args.cpu))]
        # Read after the clock stopped. The worker processes are alive until the host stops.
        cpu_host = host.cpu_us() - cpu_host
        cpu_gearmand = (cpu_us(gearmand_proc.pid) - cpu_gearmand) if gearmand_proc else 0.0
        ours = cpu_host + cpu_gearmand
        cpu_host, cpu_gearmand = cpu_host / (args.jobs + 1), cpu_gearmand / (args.jobs + 1)
        # The CPU they ran on (or the machine's CPUs) during the drain: the share the host, its
        # processes and gearmand used, the share everything else used, and the share the
        # hypervisor stole.
        capacity = elapsed * 1e6 * (os.cpu_count() if args.cpu is None else 1)
        shares = {"ours": ours / capacity, "others": max(0.0, machine[0] - ours) / capacity,
                  "steal": machine[2] / capacity}
        sentinel.close()
        workers = len(drain.children(host.proc.pid))
        if workers != processes:
            log(f"warning: {function}: {workers} worker processes at the end, not {processes}")
    finally:
        scrapes = None
        if scraper:
            scraper.terminate()
            out, _ = scraper.communicate(timeout=30)
            scrapes = json.loads(out) if out.strip() else {"times_ms": [], "errors": -1}
        host.stop()
    return {"rate": (args.jobs + 1) / elapsed, "cpu_us": cpu_host, "gearmand_cpu_us": cpu_gearmand,
            "scrapes": scrapes, "load": loadavg(), "shares": shares}


def cpu_stat(cpu):
    """CPU time so far, µs: (busy, idle, steal) of one CPU, or of all if `cpu` is None (/proc/stat)."""
    name = "cpu" if cpu is None else f"cpu{cpu}"
    with open("/proc/stat") as f:
        fields = next([int(x) for x in line.split()[1:9]] for line in f if line.split()[0] == name)
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq
    return busy * drain.TICK_US, (idle + iowait) * drain.TICK_US, steal * drain.TICK_US


def ratio_of(these, those):
    each = [x / y for x, y in zip(these, those)]
    return {"median": statistics.median(each), "each": each}


def show(r, digits=3):
    return f"{r['median']:.{digits}f}× (rounds {', '.join(f'{x:.{digits}f}' for x in r['each'])})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--geardriver", default=os.path.join(drain.ROOT, "target", "release", "geardriver"),
                        help="the current binary")
    parser.add_argument("--baseline", help="geardriver built at a51ea78 (before the feature); needed for part 2")
    parser.add_argument("--processes", type=int, default=500)
    parser.add_argument("--latency-jobs", type=int, default=10, help="jobs sharing the processes")
    parser.add_argument("--samples", type=int, default=200, help="keep-alive GETs per endpoint")
    parser.add_argument("--fresh", type=int, default=20, help="GETs on a new connection each, per endpoint")
    parser.add_argument("--latency-servers", default="builtin,gearmand")
    parser.add_argument("--jobs", type=int, default=50000, help="jobs per drain")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--process-counts", default="1,4")
    parser.add_argument("--servers", default="gearmand,builtin", help="job servers for part 2")
    parser.add_argument("--variants", default="base,cur,scrape,nohttp")
    parser.add_argument("--scrape-interval", type=float, default=1.0)
    parser.add_argument("--gearmand-threads", type=int, default=1)
    parser.add_argument("--cpu", default=str(os.cpu_count() - 1),
                        help="the CPU the throughput part's gearmand, hosts and worker processes are pinned to "
                             "(default: the last); 'none' to leave them to the scheduler")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    args.cpu = None if args.cpu == "none" else int(args.cpu)
    if not os.path.exists(args.geardriver):
        sys.exit(f"{args.geardriver} not found: run `cargo build --release` first")
    variants = args.variants.split(",")
    if not args.skip_throughput:
        if "base" not in variants:
            sys.exit("--variants must include base")
        if not args.baseline or not os.path.exists(args.baseline):
            sys.exit("--baseline PATH (geardriver built at a51ea78) is needed for the throughput part")
    counts = [int(c) for c in args.process_counts.split(",")]
    servers = args.servers.split(",")
    out = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "nproc": os.cpu_count(), "load": {"start": loadavg()},
           "args": vars(args)}
    log(f"load average at the start: {loadavg()}")
    where = "all CPUs" if args.cpu is None else f"CPU {args.cpu}"
    latencies = []
    rates = {}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        if not args.skip_latency:
            gearmand = start_gearmand(tmp, args.gearmand_threads)
            try:
                for server in args.latency_servers.split(","):
                    latencies.append(latency(args, server, tmp, gearmand[1]))
            finally:
                gearmand[0].kill()
                gearmand[0].wait()
            out["load"]["after_latency"] = loadavg()
            log(f"load average after the latency part: {loadavg()}")
        if not args.skip_throughput:
            if args.cpu is not None and os.cpu_count() > 1:
                # This script, the C clients and the scraper stay off the measured CPU.
                os.sched_setaffinity(0, set(range(os.cpu_count())) - {args.cpu})
            gearmand = start_gearmand(tmp, args.gearmand_threads, args.cpu)
            try:
                configs = [(s, p) for s in servers for p in counts]
                rates = {(s, p, v): [] for s, p in configs for v in variants}
                for r in range(args.rounds):
                    order = variants if r % 2 == 0 else list(reversed(variants))
                    for server, processes in configs:
                        for variant in order:
                            m = measure(args, variant, server, processes, r, tmp, gearmand)
                            rates[(server, processes, variant)].append(m)
                            scraped = ""
                            if m["scrapes"]:
                                t = m["scrapes"]["times_ms"]
                                scraped = f"  {len(t)} scrapes" + (f", max {max(t):.1f} ms" if t else "")
                            sh = m["shares"]
                            log(f"round {r + 1} {server:8} {processes}p {variant:6} {m['rate']:8.0f} jobs/s  "
                                f"host+workers {m['cpu_us']:5.1f} µs/job  {where}: ours {sh['ours']:4.0%}, "
                                f"others {sh['others']:4.0%}, steal {sh['steal']:3.0%}{scraped}  (load {m['load']})")
            finally:
                gearmand[0].kill()
                gearmand[0].wait()
            out["load"]["end"] = loadavg()
    log(f"load average at the end: {loadavg()}")

    print(f"Machine: {os.cpu_count()} CPUs; load average at the start {out['load']['start']}, "
          f"at the end {loadavg()} (shared machine: other work may run beside this).\n")
    targets = []
    if latencies:
        print(f"### Latency with {args.processes} processes, ms ({args.samples} keep-alive GETs each; "
              f"first = first GET on a new connection; new conn = {args.fresh} more)\n")
        print("| server | endpoint | bytes | first | new conn median / max | p50 | p99 | max |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for res in latencies:
            for path in ENDPOINTS:
                e = res[path]
                fresh = (f"{statistics.median(e['fresh_ms']):.2f} / {max(e['fresh_ms']):.2f}"
                         if e["fresh_ms"] else "–")
                print(f"| {res['server']} | {path} | {e['bytes']:,} | {e['first_ms']:.2f} | {fresh} | "
                      f"{e['p50']:.2f} | {e['p99']:.2f} | {e['max']:.2f} |")
                if path in TARGETED:
                    targets.append((f"{path} with {res['processes']} processes ({res['server']}): p99 < {TARGET_MS:.0f} ms",
                                    f"p50 {e['p50']:.2f} ms, p99 {e['p99']:.2f} ms", e["p99"] < TARGET_MS))
        print()
        for res in latencies:
            print(f"- {res['server']}: {res['processes']} processes in {res['jobs']} jobs up and idle after "
                  f"{res['up_s']:.1f} s; /metrics {res['/metrics']['lines']:,} lines, its idle processes add up to "
                  f"{res['metrics_idle']:.0f}; host peak RSS {res['host_rss_kb'] / 1024:.1f} MB; load average "
                  f"{res['load_before']} before, {res['load_after']} after")
        print()
    if rates:
        print(f"### Echo drain, {args.jobs:,} background jobs (+1 sentinel), jobs/s: median of {args.rounds} "
              f"(min – max); CPU of host + worker processes per job (median); "
              f"{'unpinned' if args.cpu is None else f'job server, host and processes on CPU {args.cpu}'}; "
              f"others = the share of {where} other processes used during the drains (median)\n")
        print("| server | processes | variant | jobs/s | ÷ base, median of rounds (each round) | CPU µs/job | ÷ base CPU | others |")
        print("|---|---:|---|---:|---|---:|---:|---:|")
        for server in servers:
            for processes in counts:
                base = rates[(server, processes, "base")]
                for variant in variants:
                    ms = rates[(server, processes, variant)]
                    r = [m["rate"] for m in ms]
                    cpu = statistics.median(m["cpu_us"] for m in ms)
                    if variant == "base":
                        vs, vs_cpu = "–", "–"
                    else:
                        rr = ratio_of(r, [m["rate"] for m in base])
                        vs = show(rr)
                        cr = ratio_of([m["cpu_us"] for m in ms], [m["cpu_us"] for m in base])
                        vs_cpu = f"{cr['median']:.3f}×"
                        if variant in ("cur", "scrape"):
                            what = "current" if variant == "cur" else f"current, /metrics scraped every {args.scrape_interval:g} s"
                            targets.append((f"{what} ≥ {TARGET_RATIO}× base ({server}, {processes} process"
                                            f"{'es' if processes > 1 else ''})", show(rr), rr["median"] >= TARGET_RATIO))
                    others = statistics.median(m["shares"]["others"] for m in ms)
                    print(f"| {server} | {processes} | {variant} | {statistics.median(r):,.0f} "
                          f"({min(r):,.0f} – {max(r):,.0f}) | {vs} | {cpu:.1f} | {vs_cpu} | {others:.0%} |")
        if "gearmand" in servers:
            print("\ngearmand's own CPU per job (median), by variant: " + "; ".join(
                f"{p}p " + ", ".join(f"{v} {statistics.median(m['gearmand_cpu_us'] for m in rates[('gearmand', p, v)]):.1f} µs"
                                     for v in variants) for p in counts))
        if "scrape" in variants:
            all_scrapes = [t for k, ms in rates.items() if k[2] == "scrape" for m in ms for t in m["scrapes"]["times_ms"]]
            errors = sum(m["scrapes"]["errors"] for k, ms in rates.items() if k[2] == "scrape" for m in ms)
            if all_scrapes:
                print(f"\nScrapes during the scrape runs: {len(all_scrapes)}, {errors} failed; latency median "
                      f"{statistics.median(all_scrapes):.2f} ms, max {max(all_scrapes):.2f} ms")
        print()
    if targets:
        print("### Targets\n")
        print("| target | measured | |")
        print("|---|---|---|")
        for label, measured, met in targets:
            print(f"| {label} | {measured} | {'met' if met else 'missed'} |")
    if args.json:
        out["latency"] = latencies
        out["throughput"] = {f"{s}@{p}@{v}": ms for (s, p, v), ms in rates.items()}
        out["targets"] = targets
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
