#!/usr/bin/env python3
"""One worker connection registering many functions, on the built-in server and on gearmand
in the same run (issue 16's load-test findings): N CAN_DO packets then an ECHO (the time until
the echo comes back: registration), one GRAB_JOB with nothing queued (the scan of the worker's
functions), and RESET_ABILITIES then an ECHO. Then, with --jobs background jobs queued (each
with a unique id), GET_STATUS_UNIQUE for the newest one (gearmand and the built-in server find a
job by unique id across functions).

Usage: cargo build --release && scripts/bench_abilities.py [--functions 10000] [--rounds 3]
       [--geardriver target/release/geardriver]
"""

import argparse
import socket
import statistics
import struct
import subprocess
import time


def packet(kind, data=b""):
    return b"\0REQ" + struct.pack(">II", kind, len(data)) + data


def reply(sock):
    head = b""
    while len(head) < 12:
        head += sock.recv(12 - len(head))
    _, length = struct.unpack(">II", head[4:])
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))


def measure_unique(port, jobs, lookups=20):
    """Queues `jobs` background jobs with unique ids, then times GET_STATUS_UNIQUE (ms each)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    batch = 5000
    for start in range(0, jobs, batch):
        count = min(batch, jobs - start)
        sock.sendall(b"".join(packet(18, b"queued\0u%d\0x" % i) for i in range(start, start + count)))
        for _ in range(count):
            reply(sock)
    started = time.perf_counter()
    for _ in range(lookups):
        sock.sendall(packet(41, b"u%d" % (jobs - 1)))
        reply(sock)
    took = (time.perf_counter() - started) / lookups
    sock.close()
    return took * 1000


def measure(port, n):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    started = time.perf_counter()
    sock.sendall(b"".join(packet(1, b"fn%d" % i) for i in range(n)) + packet(16, b"sync"))
    reply(sock)
    can_do = time.perf_counter() - started
    started = time.perf_counter()
    sock.sendall(packet(9))
    reply(sock)
    grab = time.perf_counter() - started
    started = time.perf_counter()
    sock.sendall(packet(2) + packet(16, b"sync"))
    reply(sock)
    reset = time.perf_counter() - started
    sock.close()
    return can_do * 1000, grab * 1000, reset * 1000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=100000)
    parser.add_argument("--geardriver", default="target/release/geardriver")
    args = parser.parse_args()
    servers = {
        "built-in": lambda port: [args.geardriver, "server", "--listen", f"127.0.0.1:{port}"],
        "gearmand": lambda port: ["/usr/sbin/gearmand", "-p", str(port), "-L", "127.0.0.1",
                                  "--threads", "1", "-l", "/dev/null"],
    }
    results = {name: [] for name in servers}
    for _ in range(args.rounds):
        for name, command in servers.items():
            port = free_port()
            server = subprocess.Popen(command(port), stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            try:
                wait_listening(port)
                results[name].append(measure(port, args.functions) + (measure_unique(port, args.jobs),))
            finally:
                server.terminate()
                server.wait()
    print(f"One worker, {args.functions} functions; median of {args.rounds} rounds, ms\n")
    print(f"| server | CAN_DO × N, then ECHO | GRAB_JOB (nothing queued) | RESET_ABILITIES, then ECHO "
          f"| GET_STATUS_UNIQUE, {args.jobs} jobs queued |")
    print("|---|---:|---:|---:|---:|")
    for name, rows in results.items():
        cells = [statistics.median(r[i] for r in rows) for i in range(4)]
        print(f"| {name} | {cells[0]:.1f} | {cells[1]:.2f} | {cells[2]:.1f} | {cells[3]:.3f} |")


if __name__ == "__main__":
    main()
