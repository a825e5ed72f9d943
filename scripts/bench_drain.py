#!/usr/bin/env python3
"""Drain benchmark: N background echo jobs drained by one worker process, per contender.

Every contender runs against the same gearmand in the same run, in alternating rounds:
  ours  - `geardriver worker` (one connection, the worker loop every worker process runs)
  c     - `gearman -w -f FUNC` from gearman-tools (libgearman's C worker; with no command it
          writes the workload to stdout, sent to /dev/null here, and returns an empty result)
  perl  - Perl's Gearman::Worker (libgearman-client-perl) returning the workload

For each round: queue N background jobs (with the C client, before the worker starts), then one
LOW-priority foreground "sentinel" job, which gearmand hands out after every normal one; start
the worker and time from its start until the sentinel completes (a blocked read, so measuring
adds no load). Then `status` must show the queue empty. Reports the median jobs/s per
contender (N + 1 jobs over the time), the spread, and the ratios.

Usage: scripts/bench_drain.py [--jobs 20000] [--rounds 5] [--contenders ours,c,perl]
"""

import argparse
import os
import shutil
import socket
import struct
import statistics
import subprocess
import sys
import tempfile
import time

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


def start_gearmand(tmp):
    port = free_port()
    proc = subprocess.Popen(
        [gearmand_binary(), "--listen=127.0.0.1", f"--port={port}", "--log-file=none",
         f"--pid-file={tmp}/gearmand.pid", "--threads=2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return proc, port
        except OSError:
            time.sleep(0.02)
    proc.kill()
    sys.exit("gearmand did not start")


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


def worker_command(kind, port, function, tmp, geardriver):
    server = f"127.0.0.1:{port}"
    if kind == "ours":
        return [geardriver, "worker", "--server", server, "--function", f"{function}=echo"]
    if kind == "c":
        return ["gearman", "-w", "-h", "127.0.0.1", "-p", str(port), "-f", function]
    if kind == "perl":
        script = os.path.join(tmp, "worker.pl")
        with open(script, "w") as f:
            f.write(PERL_WORKER)
        return ["perl", script, server, function]
    raise ValueError(kind)


def drain(kind, port, jobs, tmp, geardriver, round_no):
    function = f"drain_{kind}_{round_no}"
    admin = Admin(port)
    queue_jobs(port, function, jobs, admin)
    sentinel = submit_sentinel(port, function)
    start = time.perf_counter()
    worker = subprocess.Popen(worker_command(kind, port, function, tmp, geardriver),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sentinel.settimeout(600)
        wait_sentinel(sentinel)
        elapsed = time.perf_counter() - start
        left = admin.total(function)
        if left:
            sys.exit(f"{kind}: the sentinel finished with {left} jobs still queued")
    finally:
        worker.terminate()
        try:
            worker.wait(5)
        except subprocess.TimeoutExpired:
            worker.kill()
        sentinel.close()
    return (jobs + 1) / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--contenders", default="ours,c,perl")
    parser.add_argument("--geardriver", default=os.path.join(ROOT, "target", "release", "geardriver"))
    args = parser.parse_args()
    kinds = args.contenders.split(",")
    if "ours" in kinds and not os.path.exists(args.geardriver):
        sys.exit(f"{args.geardriver} not found: run `cargo build --release` first")
    with tempfile.TemporaryDirectory() as tmp:
        gearmand, port = start_gearmand(tmp)
        try:
            rates = {k: [] for k in kinds}
            for r in range(args.rounds):
                # Alternate the order so no contender always runs first (or last).
                for kind in (kinds if r % 2 == 0 else list(reversed(kinds))):
                    rate = drain(kind, port, args.jobs, tmp, args.geardriver, r)
                    rates[kind].append(rate)
                    print(f"round {r + 1} {kind:5} {rate:10.0f} jobs/s", file=sys.stderr)
        finally:
            gearmand.kill()
            gearmand.wait()
    medians = {k: statistics.median(v) for k, v in rates.items()}
    print(f"| worker | jobs/s (median of {args.rounds}) | min – max | ours ÷ this |")
    print("|---|---:|---:|---:|")
    for kind in kinds:
        ratio = medians.get("ours", 0) / medians[kind] if medians[kind] else 0
        print(f"| {kind} | {medians[kind]:.0f} | {min(rates[kind]):.0f} – {max(rates[kind]):.0f} | {ratio:.2f}× |")


if __name__ == "__main__":
    main()
