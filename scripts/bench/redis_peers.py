#!/usr/bin/env python3
"""pq against Sidekiq on one Redis, side by side, rounds alternating (make bench runs it).

For each system: N no-op tasks queued in bulk (pq: `pq submit --batch -`; Sidekiq: `push_bulk`),
then drained (pq: one or two `pq serve --concurrent-tasks 16`; Sidekiq: `sidekiq -c 10`). Redis CPU
is the server's own (INFO cpu, user + sys) before and after each phase; commands are the sum of
INFO commandstats calls (a function's inner commands included). Processing rate is timed from the
first task taken to the last one ended. Also `pq wait` on N finished tasks, on Redis and SQLite.

Usage: redis_peers.py PORT PQ PLUGINS_DIR [N] [ROUNDS]   (a redis-server on 127.0.0.1:PORT it may flush)
"""
import os, shutil, socket, subprocess, sys, tempfile, time

PORT, PQ, PLUGINS = int(sys.argv[1]), sys.argv[2], sys.argv[3]
N = int(sys.argv[4]) if len(sys.argv) > 4 else 10000
ROUNDS = int(sys.argv[5]) if len(sys.argv) > 5 else 3
HERE = os.path.dirname(os.path.abspath(__file__))


class Redis:
    """A minimal RESP client (stdlib only)."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.f = self.s.makefile("rb")

    def __call__(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        return self.read()

    def read(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t in (b"+", b"-"):
            return rest.decode()
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode()
        if t == b"*":
            return [self.read() for _ in range(int(rest))]
        raise RuntimeError(line)


r = Redis(PORT)


def info(section):
    return dict(l.split(":", 1) for l in r("INFO", section).splitlines() if ":" in l)


def cpu():
    i = info("cpu")
    return float(i["used_cpu_user"]) + float(i["used_cpu_sys"])


def commands():
    return sum(int(v.split("calls=")[1].split(",")[0]) for k, v in info("commandstats").items() if k.startswith("cmdstat_"))


def proc_cpu(pids):
    total = 0.0
    for pid in pids:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return total


def children(pid):
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                f = open(f"/proc/{name}/stat").read().rsplit(")", 1)[1].split()
                if int(f[1]) == pid:
                    out.append(int(name))
            except OSError:
                pass
    return out


def measure(queue, start, done, stop, probe_extra=lambda: []):
    """Returns (queue µs, process µs of Redis CPU per task, commands per task queue/process, rate/s, host CPU µs/task)."""
    r("FLUSHALL")
    c0, k0 = cpu(), commands()
    queue()
    c1, k1 = cpu(), commands()
    procs = start()
    first = None
    deadline = time.time() + 300
    while time.time() < deadline:
        taken, finished = done()
        now = time.time()
        if first is None and taken:
            first = now
        if finished:
            break
        time.sleep(0.005)
    t1 = time.time()
    host = proc_cpu([p.pid for p in procs] + [c for p in procs for c in children(p.pid)])
    c2, k2 = cpu(), commands()
    stop(procs)
    return ((c1 - c0) / N * 1e6, (c2 - c1) / N * 1e6, (k1 - k0) / N, (k2 - k1) / N, N / max(1e-9, t1 - (first or t1)), host / N * 1e6)


def sidekiq():
    env = dict(os.environ, REDIS_URL=f"redis://127.0.0.1:{PORT}/0")
    def queue():
        subprocess.run(["ruby", os.path.join(HERE, "push.rb"), str(N)], env=env, check=True, stderr=subprocess.DEVNULL)
    def start():
        return [subprocess.Popen(["sidekiq", "-r", os.path.join(HERE, "noop.rb"), "-c", "10", "-q", "default"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    def done():
        left, processed = r("LLEN", "queue:default"), int(r("GET", "stat:processed") or 0)
        return left < N, processed >= N
    def stop(procs):
        for p in procs:
            p.terminate(); p.wait()
    return measure(queue, start, done, stop)


def pq(hosts):
    ns = "bench"
    env = dict(os.environ, PQ_STORE=f"redis://127.0.0.1:{PORT}/0?namespace={ns}", PQ_TASK_PATHS="examples.*",
               PQ_PLUGINS_DIR=PLUGINS, PQ_WORKERS="2")
    wait_key = "{%s}:w:default\0c.noop" % ns
    def queue():
        subprocess.run([PQ, "submit", "c.noop", "--batch", "-"], env=env, input=b"{}\n" * N, check=True, stdout=subprocess.DEVNULL)
    def start():
        return [subprocess.Popen([PQ, "serve", "--concurrent-tasks", "16"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL) for _ in range(hosts)]
    def done():
        waiting, running = r("ZCARD", wait_key), r("ZCARD", "{%s}:leases" % ns)
        return waiting < N, waiting == 0 and running == 0
    def stop(procs):
        for p in procs:
            p.terminate(); p.wait()
    return measure(queue, start, done, stop)


def wait_figures():
    out = {}
    folder = tempfile.mkdtemp()
    for store in (f"redis://127.0.0.1:{PORT}/0?namespace=wait", f"sqlite:{folder}/pq.sqlite"):
        r("FLUSHALL")
        env = dict(os.environ, PQ_STORE=store, PQ_TASK_PATHS="examples.*", PQ_PLUGINS_DIR=PLUGINS, PQ_WORKERS="2")
        ids = subprocess.run([PQ, "submit", "c.noop", "--batch", "-"], env=env, input=b"{}\n" * N, check=True,
                             stdout=subprocess.PIPE).stdout
        host = subprocess.Popen([PQ, "serve", "--concurrent-tasks", "16"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([PQ, "wait", "-", "--timeout", "300"], env=env, input=ids, stdout=subprocess.DEVNULL, check=True)
        host.terminate(); host.wait()
        t = time.time()
        subprocess.run([PQ, "wait", "-"], env=env, input=ids, stdout=subprocess.DEVNULL, check=True)
        out[store.split(":")[0]] = time.time() - t
    shutil.rmtree(folder, ignore_errors=True)
    return out


def med(v):
    return sorted(v)[len(v) // 2]


if __name__ == "__main__":
    rows = {"sidekiq": [], "pq": [], "pq2": []}
    for k in range(ROUNDS):
        order = ["sidekiq", "pq", "pq2"] if k % 2 == 0 else ["pq2", "pq", "sidekiq"]
        for name in order:
            rows[name].append(sidekiq() if name == "sidekiq" else pq(1 if name == "pq" else 2))
    print(f"{N} no-op tasks queued in bulk, then drained, {ROUNDS} rounds alternating; medians (all runs in brackets)")
    labels = {"sidekiq": "Sidekiq 6.4 -c 10", "pq": "pq, one host", "pq2": "pq, two hosts"}
    for name in ("sidekiq", "pq", "pq2"):
        runs = rows[name]
        col = lambda i: med([x[i] for x in runs])
        print(f"  {labels[name]:18} Redis CPU/task: queue {col(0):5.1f} µs + process {col(1):5.1f} µs = {col(0) + col(1):5.1f} µs "
              f"[{', '.join(f'{x[0] + x[1]:.0f}' for x in runs)}]; commands/task queue {col(2):.2f}, process {col(3):.2f}; "
              f"processed {col(4):,.0f}/s [{', '.join(f'{x[4]:,.0f}' for x in runs)}]; host CPU {col(5):.0f} µs/task")
    sk = med([x[0] + x[1] for x in rows["sidekiq"]])
    one = med([x[0] + x[1] for x in rows["pq"]])
    print(f"  pq/Sidekiq Redis CPU per task: {one / sk:.2f} (target <= 0.6)")
    print(f"  pq one host / Sidekiq, tasks/s: {med([x[4] for x in rows['pq']]) / med([x[4] for x in rows['sidekiq']]):.2f} (target >= 3)")
    print(f"  pq two hosts / one host, tasks/s: {med([x[4] for x in rows['pq2']]) / med([x[4] for x in rows['pq']]):.2f} (target >= 1.6)")
    w = wait_figures()
    print(f"  pq wait - on {N} finished tasks: redis {w['redis']:.2f} s, sqlite {w['sqlite']:.2f} s (target < 0.5 s)")
