"""Test support: real perfq-agent and worker processes on unique queues.

Every wait is on an event with a bound (a log line, a "ready" line, a process
exit), never on time. PERFQ_BIN_DIR names the directory with perfq-agent,
perfqctl and perfq-example-worker (default: build/bin of this checkout).
"""

import itertools
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(HERE)  # bindings/python
REPO = os.path.dirname(os.path.dirname(PYTHON_DIR))
BIN = os.environ.get("PERFQ_BIN_DIR") or os.path.join(REPO, "build", "bin")
EXAMPLES = os.path.join(PYTHON_DIR, "examples")

# Bound on every wait for another process (start, ready line, exit).
WAIT_S = 30

_counter = itertools.count()


def binary(name):
    path = os.path.join(BIN, name)
    if not os.access(path, os.X_OK):
        raise unittest.SkipTest(f"{path} is not built (set PERFQ_BIN_DIR)")
    return path


def python_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = PYTHON_DIR + (os.pathsep + env["PYTHONPATH"]
                                      if env.get("PYTHONPATH") else "")
    return env


def read_line(stream, timeout=WAIT_S):
    """One line from a pipe, or None when `timeout` passes or the pipe ends."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = stream.fileno()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                return None
            ch = os.read(fd, 1)  # one byte at a time: never read past the line
            if not ch:
                return buf.decode(errors="replace") if buf else None
            if ch == b"\n":
                return buf.decode(errors="replace")
            buf += ch


def drain(stream, sink):
    """Keeps reading a pipe (so the child never blocks on it) into `sink`."""
    def run():
        for line in iter(stream.readline, b""):
            sink.append(line.decode(errors="replace").rstrip("\n"))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def stop_process(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(WAIT_S)


class Agent:
    """A perfq-agent on a unique queue with its own data dir. Ready once its
    first stderr line (the segment line) is out."""

    def __init__(self, *flags, rate_limit_off=True):
        self.queue = f"pyt-{os.getpid()}-{next(_counter)}"
        self.dir = tempfile.mkdtemp(prefix="perfq-pytest-")
        args = [binary("perfq-agent"), "--queue", self.queue, "--data-dir",
                os.path.join(self.dir, "data"), "--http", "off"]
        if rate_limit_off:
            args += ["--max-requests-per-user-per-minute", "0"]
        args += [str(f) for f in flags]
        self.log = []
        self.workers = []
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        first = read_line(self.proc.stderr)
        if first is None:
            self.close()
            raise RuntimeError("perfq-agent did not start")
        self.log.append(first)
        drain(self.proc.stderr, self.log)

    def start_worker(self, *args, python=False):
        """perfq-example-worker (or examples/worker.py with python=True),
        started and waited for until it prints "ready"."""
        if python:
            cmd = [sys.executable, os.path.join(EXAMPLES, "worker.py"), "--queue", self.queue]
        else:
            cmd = [binary("perfq-example-worker"), "--queue", self.queue]
        proc = subprocess.Popen(cmd + [str(a) for a in args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, env=python_env())
        self.workers.append(proc)
        line = read_line(proc.stdout)
        if line != "ready":
            raise RuntimeError(f"worker did not get ready (said {line!r})")
        drain(proc.stdout, [])
        return proc

    def ctl(self, *args):
        r = subprocess.run([binary("perfqctl"), "--queue", self.queue] + [str(a) for a in args],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=WAIT_S)
        return r

    def dlq(self):
        r = self.ctl("--json", "dlq", "list", "--all")
        if r.returncode != 0:
            raise RuntimeError(f"perfqctl dlq list failed: {r.stderr!r}")
        return json.loads(r.stdout)

    def close(self):
        for w in self.workers:
            stop_process(w)
            if w.stdout:
                w.stdout.close()
        self.workers.clear()
        if self.proc is not None:
            stop_process(self.proc)
            if self.proc.stderr:
                self.proc.stderr.close()
            subprocess.run([binary("perfqctl"), "--queue", self.queue, "destroy"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=WAIT_S)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


class AgentTestCase(unittest.TestCase):
    """A fresh agent per test; AGENT_FLAGS adds settings."""

    AGENT_FLAGS = ()

    def setUp(self):
        self.agent = Agent(*self.AGENT_FLAGS)
        self.addCleanup(self.agent.close)

    def queue(self, user_id="alice", **kw):
        import perfq
        q = perfq.Queue(self.agent.queue, user_id=user_id, **kw)
        self.addCleanup(q.close)
        return q


class WorkerThread:
    """run_worker on a background thread of this process, stopped and joined
    (with a bound) at cleanup."""

    def __init__(self, q):
        self.q = q
        self.stop = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            self.q.run_worker(self.stop)
        except BaseException as e:  # noqa: BLE001 - reported by join()
            self.error = e

    def start(self):
        self.thread.start()
        return self

    def join(self):
        self.stop.set()
        self.thread.join(WAIT_S)
        if self.thread.is_alive():
            raise RuntimeError("run_worker did not return")
        if self.error is not None:
            raise self.error
