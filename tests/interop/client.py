#!/usr/bin/env python3
"""Interop test client: PyPI pygearman 0.2.6 (import name `gearman`, a Python 3
fork of python-gearman 2.x). Submits jobs to one job server and prints, one
JSON line per event, what the library reports, so the Rust tests can check job
semantics through it.

Usage: python3 client.py 'JSON-SPEC'
  {"server": "127.0.0.1:4730", "exceptions": false, "mode": "do"|"set",
   "timeout_ms": 20000,
   "tasks": [{"function": "echo", "data": "text", "unique": "",
              "priority": "normal"|"high"|"low", "background": false}]}
  mode "do":  each task in turn with submit_job(wait_until_complete=True)
  mode "set": submit_multiple_requests(all, wait_until_complete=False) on one
              connection, then the library's poll loop until all are complete
Output (stdout, flushed per line; every line also has "t_ms" since start):
  {"task":i,"event":"created"|"status"(numerator,denominator)|"data"(hex)|"warning"(hex)
   |"complete"(hex)|"fail"|"exception"(hex)|"error"(message)}
  then {"done":true}, exit 0.  Timeout: {"event":"hang"}, exit 3.  Bad spec: exit 2.

pygearman has no callbacks: a GearmanJobRequest only accumulates state,
result, exception, data_updates, warning_updates and status (the LAST
WORK_STATUS only). Findings:
- "exceptions" cannot be requested (the client handler has no recv_option_res,
  an OPTION_RES would raise), so the flag is ignored and WORK_EXCEPTION never
  comes from gearmand.
- gearmand 1.1.20 then sends WORK_FAIL "handle\\0" (trailing NUL): the handle
  lookup raises KeyError out of the poll loop -> "error" for unfinished tasks.
- do mode: all events are printed after submit_job returns (t_ms of that
  moment), per task in the fixed order created, status, data..., warning...,
  exception, complete|fail; earlier WORK_STATUS updates are lost.
  submit_job(wait_until_complete=True) returns WITHOUT waiting when
  poll_timeout is None (the fork's Stopwatch check), so poll_timeout is passed.
- set mode, several tasks with the SAME unique: gearmand merges them and
  answers every JOB_CREATED with one handle; pygearman maps a handle to ONE
  request, so the second WORK_COMPLETE raises InvalidClientState: one task
  gets "complete", the others "error".
- set mode: requests are inspected after each poll round, so events are
  near-real-time, but several packets read in one round come out in the fixed
  order above, and only the last status of a round is seen.
"""
import json
import os
import signal
import sys
import time

import gearman
from gearman.constants import JOB_COMPLETE, JOB_CREATED, JOB_FAILED, PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NONE

T0 = time.monotonic()
PRIORITY = {"high": PRIORITY_HIGH, "low": PRIORITY_LOW, "normal": PRIORITY_NONE}


def emit(**ev):
    ev["t_ms"] = int((time.monotonic() - T0) * 1000)
    sys.stdout.write(json.dumps(ev) + "\n")
    sys.stdout.flush()


def hexs(b):
    return (b.encode("utf-8") if isinstance(b, str) else (b or b"")).hex()


try:
    spec = json.loads(sys.argv[1])
    assert isinstance(spec["server"], str) and spec["mode"] in ("do", "set")
    tasks = spec["tasks"]
    assert isinstance(tasks, list) and all(isinstance(t["function"], str) for t in tasks)
except Exception:
    sys.stderr.write("bad spec: usage: python3 client.py '{\"server\":...,\"mode\":\"do\"|\"set\",\"tasks\":[...]}'\n")
    sys.exit(2)

timeout_s = spec.get("timeout_ms", 20000) / 1000.0
deadline = time.monotonic() + timeout_s


def hang(*_):
    emit(event="hang")
    os._exit(3)


signal.signal(signal.SIGALRM, hang)
signal.setitimer(signal.ITIMER_REAL, timeout_s)

client = gearman.GearmanClient([spec["server"]])
seen = [{"created": False, "status": None, "exception": False, "ended": False} for _ in tasks]


def report(i, req):
    """Print what request i gained since the last look; True once it has ended."""
    s = seen[i]
    if not s["created"] and req.job.handle is not None:
        s["created"] = True
        emit(task=i, event="created")
    if req.status and req.status.get("time_received") != s["status"]:
        s["status"] = req.status.get("time_received")
        emit(task=i, event="status", numerator=req.status["numerator"], denominator=req.status["denominator"])
    while req.data_updates:
        emit(task=i, event="data", hex=hexs(req.data_updates.popleft()))
    while req.warning_updates:
        emit(task=i, event="warning", hex=hexs(req.warning_updates.popleft()))
    if req.exception is not None and not s["exception"]:
        s["exception"] = True
        emit(task=i, event="exception", hex=hexs(req.exception))
    if not s["ended"]:
        if req.state == JOB_COMPLETE:
            s["ended"] = True
            emit(task=i, event="complete", hex=hexs(req.result))
        elif req.state == JOB_FAILED:
            s["ended"] = True
            emit(task=i, event="fail")
        elif req.background and req.state == JOB_CREATED:
            s["ended"] = True
    return s["ended"]


def error_unended(msg, idx):
    for i in idx:
        if not seen[i]["ended"]:
            seen[i]["ended"] = True
            emit(task=i, event="error", message=msg)


def job(t):
    return {"task": t["function"], "data": t.get("data", ""), "unique": t.get("unique") or None,
            "priority": PRIORITY[t.get("priority") or "normal"]}


def remaining():
    return max(deadline - time.monotonic(), 0.001)


if spec["mode"] == "do":
    for i, t in enumerate(tasks):
        j = job(t)
        try:
            req = client.submit_job(j["task"], j["data"], unique=j["unique"], priority=j["priority"],
                                    background=bool(t.get("background")), wait_until_complete=True,
                                    poll_timeout=remaining())
        except Exception as e:
            error_unended("%s: %s" % (type(e).__name__, e), [i])
            continue
        if req.timed_out:
            hang()
        if not report(i, req):
            error_unended("submit_job returned with state %s" % req.state, [i])
else:
    # The helper submit_multiple_jobs() uses (it picks a random unique when none is
    # given); called directly because "background" is per task here, not per call.
    reqs = [client._create_request_from_dictionary(job(t), background=bool(t.get("background")))
            for t in tasks]
    try:
        client.submit_multiple_requests(reqs, wait_until_complete=False, poll_timeout=remaining())
        if not all([report(i, r) for i, r in enumerate(reqs)]):
            client.poll_connections_until_stopped(
                client.connection_list,
                lambda _activity: not all([report(i, r) for i, r in enumerate(reqs)]),
                timeout=remaining())
        if not all([report(i, r) for i, r in enumerate(reqs)]):
            hang()
    except Exception as e:
        for i, r in enumerate(reqs):
            report(i, r)    # whatever landed before the library raised
        error_unended("%s: %s" % (type(e).__name__, e), range(len(tasks)))

signal.setitimer(signal.ITIMER_REAL, 0)
emit(done=True)
sys.exit(0)
