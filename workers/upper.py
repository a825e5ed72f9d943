#!/usr/bin/env python3
"""An example `command` worker: geardriver runs it once per job with the job's workload on
stdin; what it writes to stdout is the result. A non-zero exit fails the job, with what it
wrote to stderr as the message.

    [[jobs]]
    name    = "upper"
    command = ["python3", "workers/upper.py"]
"""
import sys

data = sys.stdin.buffer.read()
if not data.strip():
    sys.stderr.write("upper: the workload is empty\n")
    sys.exit(1)
sys.stdout.buffer.write(data.upper())
