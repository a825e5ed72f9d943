#!/usr/bin/env python3
"""Drain benchmark: N background echo jobs drained by one worker process, per contender.

Every contender runs against the same gearmand in the same run, in alternating rounds:
  ours   - `geardriver worker` (the worker loop every worker process runs; prefetch on, as
           by default)
  ours-np - the same with --no-prefetch (one connection)
  host1  - `geardriver run` with one echo job, min = max = 1 process
  host4  - `geardriver run` with min = max = 4 processes
  c, c4  - 1 or 4 `gearman -w -f FUNC` from gearman-tools (libgearman's C worker; with no
           command it writes the workload to stdout, /dev/null here, and returns nothing)
  perl   - Perl's Gearman::Worker (libgearman-client-perl) returning the workload

The peak resident memory of the host and of its worker processes is the kernel's VmHWM,
read once at the end of each host round (after the clock stopped). So is the CPU time (user +
system, /proc/PID/stat) the worker processes used, and gearmand's for the round: per job, it
tells a worker that is slower from one that waits on the job server like every other.

For each round: queue N background jobs (with the C client, before the worker starts), then one
LOW-priority foreground "sentinel" job, which gearmand hands out after every normal one; start
the worker and time from its start until the sentinel completes (a blocked read, so measuring
adds no load) and `status` shows nothing left (other processes may hold a last job). Reports the median jobs/s per
contender (N + 1 jobs over the time), the spread, and the ratios: of the medians, and the
median of each round's ratio (the two ran minutes apart at most, so it moves less).

With --server builtin the job server is geardriver's built-in one instead of gearmand. With
--pin the job server runs on CPU 0 and every worker process on CPU 1 (this VM's unpinned runs
swing by several times from one minute to the next; pinned, the job server and the worker
still run side by side, which is what prefetch overlaps).

Usage: scripts/bench_drain.py [--jobs 20000] [--rounds 5] [--contenders ours,c,perl]
                              [--server gearmand|builtin] [--pin]
"""

import argparse
import json
import os
import shutil
import socket
import struct
import statistics
import subprocess
import sys
import tempfile
import time

THREADS = int(os.environ.get("GEARMAND_THREADS", "4"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PERL_WORKER = r"""
use strict; use warnings;
use Gearman::Worker;
my ($server, $function) = @ARGV;
my $worker = Gearman::Worker->new(job_servers => [$server]);
$worker->register_function($function => sub { $_[0]->arg });
$worker->work while 1;
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gearmand_binary():
    for candidate in [os.environ.get("GEARMAND_BIN"), shutil.which("gearmand"), "/usr/sbin/gearmand"]:
        if candidate and os.path.exists(candidate):
            return candidate
    sys.exit("gearmand not found: apt-get install gearman-job-server")


class Admin:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def status(self):
        self.sock.sendall(b"status\r\n")
        while not (self.buf.endswith(b"\n.\n") or self.buf == b".\n"):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("gearmand closed the admin connection")
            self.buf += chunk
        rows, self.buf = self.buf, b""
        out = {}
        for line in rows.decode().splitlines():
            if line == ".":
                break
            name, total, running, workers = line.split("\t")
            out[name] = (int(total), int(running), int(workers))
        return out

    def total(self, function):
        return self.status().get(function, (0, 0, 0))[0]


PIN = {"server": [], "workers": []}


def pin(cpus):
    """Sets --pin's CPU lists (taskset prefixes)."""
    PIN["server"], PIN["workers"] = (["taskset", "-c", c] for c in cpus)


def start_builtin(geardriver):
    port = free_port()
    proc = subprocess.Popen([*PIN["server"], geardriver, "server", "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, GEARDRIVER_LOG="warn"))
    return wait_for_port(proc, port, "the built-in server")


def start_server(kind, tmp, geardriver):
    """The job server of `kind` ("gearmand" or "builtin"): (process, port)."""
    return start_builtin(geardriver) if kind == "builtin" else start_gearmand(tmp)


def wait_children(parent, count, what):
    """Waits (30 s at most) until `parent` has `count` child processes."""
    deadline = time.time() + 30
    while len(children(parent)) < count:
        if time.time() > deadline:
            sys.exit(f"{what} did not start {count} processes")
        time.sleep(0.05)


def start_gearmand(tmp):
    port = free_port()
    proc = subprocess.Popen(
        [*PIN["server"], gearmand_binary(), "--listen=127.0.0.1", f"--port={port}", "--log-file=none",
         f"--pid-file={tmp}/gearmand.pid", f"--threads={THREADS}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return wait_for_port(proc, port, "gearmand")


def wait_for_port(proc, port, name):
    """Waits (10 s at most) until `proc` accepts connections on `port`."""
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    sys.exit(f"{name} did not start")


def queue_jobs(port, function, jobs, admin):
    # Not bare numbers: Perl's Gearman::Worker 2.004 loops forever on a job whose workload is "0".
    lines = "".join(f"job-{i}\n" for i in range(jobs)).encode()
    subprocess.run(["gearman", "-h", "127.0.0.1", "-p", str(port), "-b", "-N", "-f", function],
                   input=lines, stdout=subprocess.DEVNULL, check=True)
    deadline = time.time() + 60
    while admin.total(function) < jobs:
        if time.time() > deadline:
            sys.exit(f"only {admin.total(function)} of {jobs} jobs queued")
        time.sleep(0.01)


def submit_sentinel(port, function):
    """Submits a LOW-priority foreground job; returns the socket to wait on."""
    sock = socket.create_connection(("127.0.0.1", port))
    body = function.encode() + b"\0\0sentinel"
    sock.sendall(b"\0REQ" + struct.pack(">II", 33, len(body)) + body)
    kind, _ = read_packet(sock)
    if kind != 8:
        sys.exit(f"sentinel: expected JOB_CREATED, got packet type {kind}")
    return sock


def read_packet(sock):
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                sys.exit("gearmand closed the sentinel connection")
            data += chunk
        return data
    header = exactly(12)
    kind, size = struct.unpack(">II", header[4:])
    return kind, exactly(size)


def wait_sentinel(sock):
    while True:
        kind, _ = read_packet(sock)
        if kind in (13, 14, 25):  # WORK_COMPLETE, WORK_FAIL, WORK_EXCEPTION
            return


def host_config(tmp, port, function, processes, worker="echo", extra="", file=None):
    """A host config with one job of `processes` processes (min = max), its log in `tmp`."""
    path = os.path.join(tmp, f"{file or function}.toml")
    with open(path, "w") as f:
        f.write(f"""[driver]
job_servers = ["127.0.0.1:{port}"]
interval = 0
logfile = "{tmp}/{file or function}.log"
[console]
listen = ""
[http]
listen = ""
[[jobs]]
name = "{function}"
worker = "{worker}"
min_processes = {processes}
max_processes = {processes}
{extra}""")
    return path


def worker_commands(kind, port, function, tmp, geardriver):
    """The commands to start for a contender (several for the 4-process ones)."""
    server = f"127.0.0.1:{port}"
    if kind in ("ours", "ours-np"):
        flags = ["--no-prefetch"] if kind == "ours-np" else []
        return [[geardriver, "worker", "--server", server, "--function", f"{function}=echo", *flags]]
    if kind in ("host1", "host4"):
        return [[geardriver, "run", "--config", host_config(tmp, port, function, int(kind[-1]))]]
    if kind in ("c", "c4"):
        count = 4 if kind == "c4" else 1
        return [["gearman", "-w", "-h", "127.0.0.1", "-p", str(port), "-f", function]] * count
    if kind == "perl":
        script = os.path.join(tmp, "worker.pl")
        with open(script, "w") as f:
            f.write(PERL_WORKER)
        return [["perl", script, server, function]]
    raise ValueError(kind)


def peak_rss_kb(pid):
    """The kernel's record of a process's peak resident memory (VmHWM)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    text = f.read()
                if int(text[text.rfind(")") + 2:].split()[1]) == pid:
                    out.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return out


def per_round_ratio(these, those):
    """Each round's ratio of two contenders measured back to back: the median and the range."""
    each = [x / y for x, y in zip(these, those)]
    return {"median": statistics.median(each), "min": min(each), "max": max(each)}


def show_ratio(ratio, digits=2):
    return (f"per round {ratio['median']:.{digits}f}× (median), "
            f"{ratio['min']:.{digits}f} – {ratio['max']:.{digits}f}×")


PEAKS = {}
CPU = {}  # kind -> [(worker µs per job, gearmand µs per job)], one per round
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def cpu_us(pid):
    """The CPU time (user + system) a process has used so far, from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return 0.0
    fields = text[text.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) * TICK_US


def drain(kind, port, jobs, tmp, geardriver, round_no, gearmand_pid=None):
    function = f"drain_{kind}_{round_no}"
    admin = Admin(port)
    queue_jobs(port, function, jobs, admin)
    sentinel = submit_sentinel(port, function)
    gearmand_before = cpu_us(gearmand_pid) if gearmand_pid else 0.0
    start = time.perf_counter()
    workers = [subprocess.Popen([*PIN["workers"], *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for cmd in worker_commands(kind, port, function, tmp, geardriver)]
    try:
        sentinel.settimeout(600)
        wait_sentinel(sentinel)
        # With several processes, others may still be finishing their last jobs.
        while admin.total(function) > 0:
            if time.perf_counter() - start > 600:
                sys.exit(f"{kind}: jobs still queued 600 s after the start")
            time.sleep(0.001)
        elapsed = time.perf_counter() - start
        gearmand_used = cpu_us(gearmand_pid) - gearmand_before if gearmand_pid else 0.0
        # The processes that served the jobs: the host's children, or the workers themselves.
        pids = children(workers[0].pid) if kind.startswith("host") else [w.pid for w in workers]
        CPU.setdefault(kind, []).append((sum(cpu_us(p) for p in pids) / (jobs + 1),
                                         gearmand_used / (jobs + 1)))
        if kind.startswith("host"):
            # Read after the clock stopped, so measuring costs the run nothing.
            host_pid = workers[0].pid
            worker_peak = max([peak_rss_kb(c) for c in children(host_pid)] or [0])
            host, worker = PEAKS.get(kind, (0, 0))
            PEAKS[kind] = (max(host, peak_rss_kb(host_pid)), max(worker, worker_peak))
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
        sentinel.close()
    return (jobs + 1) / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--contenders", default="ours,c,host1,host4,c4,perl")
    parser.add_argument("--geardriver", default=os.path.join(ROOT, "target", "release", "geardriver"))
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--server", choices=["gearmand", "builtin"], default="gearmand")
    parser.add_argument("--pin", action="store_true", help="job server on CPU 0, workers on CPU 1")
    args = parser.parse_args()
    if args.pin:
        pin(["0", "1"])
    kinds = args.contenders.split(",")
    if any(k in kinds for k in ("ours", "host1", "host4")) and not os.path.exists(args.geardriver):
        sys.exit(f"{args.geardriver} not found: run `cargo build --release` first")
    with tempfile.TemporaryDirectory() as tmp:
        gearmand, port = start_server(args.server, tmp, args.geardriver)
        try:
            rates = {k: [] for k in kinds}
            for r in range(args.rounds):
                # Alternate the order so no contender always runs first (or last).
                for kind in (kinds if r % 2 == 0 else list(reversed(kinds))):
                    rate = drain(kind, port, args.jobs, tmp, args.geardriver, r, gearmand.pid)
                    rates[kind].append(rate)
                    print(f"round {r + 1} {kind:5} {rate:10.0f} jobs/s", file=sys.stderr)
        finally:
            gearmand.kill()
            gearmand.wait()
    medians = {k: statistics.median(v) for k, v in rates.items()}
    print(f"| contender | jobs/s (median of {args.rounds}) | min – max |")
    print("|---|---:|---:|")
    for kind in kinds:
        print(f"| {kind} | {medians[kind]:.0f} | {min(rates[kind]):.0f} – {max(rates[kind]):.0f} |")
    print()
    pairs = [("ours", "c"), ("ours-np", "c"), ("ours", "ours-np"), ("host1", "c"), ("host4", "c4"), ("host1", "perl"), ("ours", "perl")]
    paired = {}
    for a, b in pairs:
        if a in medians and b in medians:
            paired[f"{a}/{b}"] = per_round_ratio(rates[a], rates[b])
            print(f"- {a} ÷ {b}: {medians[a] / medians[b]:.2f}× of the medians; {show_ratio(paired[f'{a}/{b}'])}")
    for kind, (host, worker) in sorted(PEAKS.items()):
        print(f"- {kind}: peak RSS host {host / 1024:.1f} MB, worker process {worker / 1024:.1f} MB")
    cpu = {k: {"worker_us": statistics.median(w for w, _ in v), "gearmand_us": statistics.median(g for _, g in v)}
           for k, v in CPU.items()}
    print("\nCPU time per job (user + system, median of the rounds; all the contender's processes):\n")
    print("| contender | worker processes | gearmand |")
    print("|---|---:|---:|")
    for kind in kinds:
        print(f"| {kind} | {cpu[kind]['worker_us']:.1f} µs | {cpu[kind]['gearmand_us']:.1f} µs |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"jobs_per_s": medians, "paired": paired, "cpu_per_job": cpu,
                       "peak_rss_kb": {k: {"host": h, "worker": w} for k, (h, w) in PEAKS.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
