#!/usr/bin/env python3
"""HTTP figures for `make bench`.

    http_bench.py BIN_PQ PLUGINS_DIR [TASKS] [ROUNDS]

1. `GET /api/queues` and `GET /metrics` of a `pq serve --http` host at 64 connections for 10 s
   (wrk, from Debian's packages): requests/s, latency percentiles, errors.
2. The same host processing TASKS no-op tasks with no event-stream subscriber and with 50
   subscribers on `GET /api/events`, alternating, ROUNDS times each: tasks/s and the ratio.
"""

import json
import os
import resource
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PQ, PLUGINS = sys.argv[1], sys.argv[2]
TASKS = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
ROUNDS = int(sys.argv[4]) if len(sys.argv) > 4 else 3


class Host:
    def __init__(self, work, name, extra=()):
        self.store = "sqlite:%s/%s.sqlite" % (work, name)
        self.env = dict(os.environ, PQ_STORE=self.store, PQ_TASK_PATHS="examples.*", PQ_PLUGINS_DIR=PLUGINS)
        self.log_path = "%s/%s.log" % (work, name)
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [PQ, "serve", "--http", "127.0.0.1:0", "--concurrent-tasks", "16", *extra],
            env=self.env, stdout=self.log, stderr=self.log, cwd=work)
        self.url = None
        deadline = time.time() + 30
        while time.time() < deadline and self.url is None:
            match = re.search(r"dashboard and API on (http://[0-9.:]+/)", open(self.log_path).read())
            if match:
                self.url = match.group(1)
            else:
                time.sleep(0.05)
        if self.url is None:
            raise SystemExit("host did not start: " + open(self.log_path).read())
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return r.read()

    def submit(self, job, lines):
        subprocess.run([PQ, "submit", job, "--batch", "-"], input=lines, env=self.env, check=True,
                       stdout=subprocess.DEVNULL, text=True)

    def idle(self):
        return all(q["queued"] + q["delayed"] + q["retry"] + q["started"] == 0 for q in json.loads(self.get("api/queues")))

    def cpu(self):
        fields = open("/proc/%d/stat" % self.process.pid).read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def wrk(url, label):
    out = subprocess.run(["wrk", "-t2", "-c64", "-d10s", "--latency", url], capture_output=True, text=True).stdout
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    percentiles = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Socket errors: (.*)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    print("  %-14s %9.0f req/s   p50 %-8s p99 %-8s errors: %s, non-2xx: %s" % (
        label, float(rps.group(1)) if rps else 0, percentiles.get("50", "?"), percentiles.get("99", "?"),
        errors.group(1) if errors else "none", non2xx.group(1) if non2xx else "0"))


class Subscribers:
    """N clients of GET /api/events, each reading (and dropping) what the host sends."""

    def __init__(self, port, count):
        self.sockets = []
        self.bytes = [0] * count
        self.running = True
        self.threads = []
        for i in range(count):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
            self.sockets.append(s)
            t = threading.Thread(target=self.read, args=(i, s), daemon=True)
            t.start()
            self.threads.append(t)

    def read(self, index, s):
        buffer = bytearray(1 << 18)  # reused: a fresh 1 MB object per recv would cost more than the data
        while self.running:
            try:
                n = s.recv_into(buffer)
            except OSError:
                return
            if n == 0:
                return
            self.bytes[index] += n

    def close(self):
        self.running = False
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def drain_rate(host, tasks):
    lines = "{}\n" * tasks
    start = time.time()
    host.submit("c.noop", lines)
    deadline = time.time() + 300
    while time.time() < deadline and not host.idle():
        time.sleep(0.02)
    return tasks / (time.time() - start)


def main():
    work = tempfile.mkdtemp(prefix="pq-http-bench-")
    try:
        print("HTTP API (wrk -t2 -c64 -d10s; a pq serve --http host on SQLite with 2,000 delayed tasks in 4 queues)")
        host = Host(work, "wrk")
        for q in range(4):
            subprocess.run([PQ, "submit", "c.noop", "--batch", "-", "--delay", "3600", "--queue", "q%d" % q],
                           input="{}\n" * 500, env=host.env, check=True, stdout=subprocess.DEVNULL, text=True)
        wrk(host.url + "api/queues", "/api/queues")
        wrk(host.url + "metrics", "/metrics")
        host.stop()

        print("A host processing %d no-op tasks (submit to drained), without and with 50 SSE subscribers, alternating" % TASKS)
        counts = [int(n) for n in os.environ.get("PQ_BENCH_SUBSCRIBERS", "0 50").split()]
        rates = {n: [] for n in counts}
        delivered = []
        for round_ in range(ROUNDS):
            for subscribers in counts:
                host = Host(work, "sse-%d-%d" % (round_, subscribers))
                subs = Subscribers(host.port, subscribers) if subscribers else None
                if subs:
                    deadline = time.time() + 10
                    while time.time() < deadline and b"pq_http_event_subscribers %d\n" % subscribers not in host.get("metrics"):
                        time.sleep(0.05)
                host_cpu, own_cpu = host.cpu(), resource.getrusage(resource.RUSAGE_SELF)
                rate = drain_rate(host, TASKS)
                host_cpu = host.cpu() - host_cpu
                own = resource.getrusage(resource.RUSAGE_SELF)
                reader_cpu = own.ru_utime + own.ru_stime - own_cpu.ru_utime - own_cpu.ru_stime
                rates[subscribers].append(rate)
                if subs:
                    time.sleep(0.5)
                    delivered.append(sum(subs.bytes) / subscribers)
                    subs.close()
                host.stop()
                print("  round %d, %2d subscribers: %8.0f tasks/s   host CPU %5.1f µs/task, subscribers' CPU %5.1f µs/task" % (
                    round_ + 1, subscribers, rate, host_cpu / TASKS * 1e6, reader_cpu / TASKS * 1e6))
        best0, best50 = max(rates[counts[0]]), max(rates[counts[-1]])
        median = lambda xs: sorted(xs)[len(xs) // 2]
        print("  without: median %.0f tasks/s; with 50 subscribers: median %.0f tasks/s; ratio %.2f (median), %.2f (best)" % (
            median(rates[counts[0]]), median(rates[counts[-1]]), median(rates[counts[-1]]) / median(rates[counts[0]]), best50 / best0))
        if delivered:
            print("  each subscriber received %.1f MB of events per round (3 events a task)" % (median(delivered) / 1e6))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
