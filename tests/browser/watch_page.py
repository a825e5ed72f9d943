#!/usr/bin/env python3
"""Loads a page in headless Chromium and reports what a person would see on it as it changes.

    watch_page.py URL EXPRESSION [SECONDS]

Chromium is driven over its DevTools pipe (--remote-debugging-pipe: JSON messages ended by a
NUL byte on fds 3 and 4), so nothing but Python and Chromium is needed. Every 100 ms the
JavaScript EXPRESSION is evaluated in the page; each time its value (as JSON) changes, it is
printed on one line. Runs until SECONDS pass (30 by default) or it is killed. Exits 2 when
Chromium cannot be started or the page cannot be loaded.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("watch_page: no chromium on PATH")


class Browser:
    def __init__(self, profile):
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        # Chromium reads commands on fd 3 and writes replies on fd 4: a shell puts them there.
        self.process = subprocess.Popen(
            ["sh", "-c", f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}',
             chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(to_browser_r, from_browser_w))
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.buffer = b""
        self.next_id = 0

    def call(self, method, params=None, session=None, timeout=15):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            chunk = os.read(self.from_browser, 65536)
            if not chunk:
                raise RuntimeError("chromium closed its pipe")
            self.buffer += chunk
        raise RuntimeError(f"{method}: no reply within {timeout} s")

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    url, expression = sys.argv[1], sys.argv[2]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    with tempfile.TemporaryDirectory() as profile:
        try:
            browser = Browser(profile)
            target = browser.call("Target.createTarget", {"url": url})["targetId"]
            session = browser.call("Target.attachToTarget",
                                   {"targetId": target, "flatten": True})["sessionId"]
        except Exception as e:
            print(f"watch_page: cannot load {url}: {e}", file=sys.stderr)
            sys.exit(2)
        last = None
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                result = browser.call("Runtime.evaluate",
                                      {"expression": expression, "returnByValue": True},
                                      session=session)
                value = json.dumps(result.get("result", {}).get("value"), sort_keys=True)
                if value != last:
                    print(value, flush=True)
                    last = value
                time.sleep(0.1)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
