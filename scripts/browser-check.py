#!/usr/bin/env python3
"""Drives the pq dashboard in headless Chromium, for the tests and the README screenshot.

It speaks the DevTools protocol over --remote-debugging-pipe (JSON messages ending in NUL on
fds 3 and 4), so it needs only Python's standard library and Debian's chromium.

    browser-check.py URL [--token TOKEN]

opens URL, types TOKEN into the page's token form when the page asks for one, waits (bounded)
until the page says its event stream is live and prints `ready`. Then it reads commands, one a
line, from stdin, and answers each with one line of JSON on stdout:

    task ID        wait (bounded) until the tasks table has a row for ID, then report that row,
                   whether any element from task data became markup, and the page title
    screenshot F   write a PNG of the page to F
    quit           close the browser
"""

import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def chromium_binary():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("error: no chromium on PATH (apt-get install chromium)")


class Browser:
    def __init__(self, width=1280, height=900):
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # Move the child's ends above fd 100 so the dup2 to 3 and 4 cannot clobber one another.
        child_in = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 100)
        child_out = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 100)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.profile = tempfile.mkdtemp(prefix="pq-chromium-")

        def place_fds():
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)
            # Chromium goes when this script goes, however it ends (PR_SET_PDEATHSIG).
            try:
                import ctypes
                ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
            except OSError:
                pass

        self.process = subprocess.Popen(
            [chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--remote-debugging-pipe", "--user-data-dir=" + self.profile,
             "--window-size=%d,%d" % (width, height), "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=place_fds, pass_fds=(3, 4))
        os.close(child_in)
        os.close(child_out)
        self.writer = to_browser_w
        self.reader = from_browser_r
        self.buffer = b""
        self.next_id = 0
        self.session = None
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def call(self, method, params=None, timeout=20):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self.writer, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise RuntimeError("%s: %s" % (method, reply["error"]))
                    return reply.get("result", {})
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("no answer to " + method)
            ready, _, _ = select.select([self.reader], [], [], left)
            if ready:
                chunk = os.read(self.reader, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self.buffer += chunk

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError("page error: %s" % json.dumps(result["exceptionDetails"])[:400])
        return result["result"].get("value")

    def wait_for(self, expression, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                value = self.evaluate(expression)
            except RuntimeError:
                value = None  # the page is still loading
            if value:
                return value
            time.sleep(0.1)
        return None

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


TASK_ROW = """(() => {
  const row = document.querySelector('#tasks tr[data-id="%s"]');
  if (!row) return null;
  return {
    found: true,
    text: row.textContent,
    cells: [...row.children].map(c => c.textContent),
    titles: [...row.querySelectorAll('[title]')].map(e => e.getAttribute('title')),
    in_events: !!document.querySelector('#events [data-id="%s"]'),
    markup_from_data: document.querySelectorAll('#tasks script, #tasks img, #events script, #events img').length,
    title: document.title,
    live: document.getElementById('live').textContent,
  };
})()"""


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    url = args[0]
    token = None
    if "--token" in args:
        token = args[args.index("--token") + 1]
    browser = Browser()
    try:
        browser.call("Page.navigate", {"url": url})
        if token is not None:
            if browser.wait_for("!document.getElementById('auth').hidden", 20) is None:
                raise RuntimeError("the page did not ask for the token")
            browser.evaluate("document.getElementById('token-input').value = %s;"
                             "document.getElementById('token-submit').click(); true" % json.dumps(token))
        if browser.wait_for("document.getElementById('live').textContent === 'live'", 20) is None:
            raise RuntimeError("the page's event stream did not go live: %s"
                               % browser.evaluate("document.getElementById('live').textContent"))
        print("ready", flush=True)
        for line in sys.stdin:
            command, _, rest = line.strip().partition(" ")
            if command == "task":
                task_id = rest.replace('"', '')
                row = browser.wait_for(TASK_ROW % (task_id, task_id), 15)
                print(json.dumps(row or {"found": False}), flush=True)
            elif command == "screenshot":
                shot = browser.call("Page.captureScreenshot", {"format": "png"})
                import base64
                with open(rest, "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
                print(json.dumps({"ok": True}), flush=True)
            elif command == "quit":
                break
            else:
                print(json.dumps({"error": "unknown command " + command}), flush=True)
    except Exception as error:
        print("error: %s" % error, flush=True)
        sys.exit(1)
    finally:
        browser.close()


if __name__ == "__main__":
    main()
