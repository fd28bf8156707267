"""Test point 1: submit -> a processor in ANOTHER process -> result."""
import json
import os
import subprocess
import sys
import unittest

import perfq
from support import EXAMPLES, WAIT_S, AgentTestCase, python_env


class RoundTrip(AgentTestCase):
    def check_echo(self, q, type_, n=20):
        subs = [q.submit(type_, {"i": i, "pad": "x" * i}) for i in range(n)]
        for i, s in enumerate(subs):
            self.assertRegex(s.request_id, r"^[0-9a-f]{16}$")
            self.assertEqual((s.status, s.mode, s.type, s.priority, s.duplicate),
                             ("pending", "fifo", type_, 5, False))
            o = q.result(s.request_id, timeout=WAIT_S)
            sent = len(json.dumps({"i": i, "pad": "x" * i}, separators=(",", ":")))
            self.assertEqual(o.request_id, s.request_id)
            self.assertEqual(o.status, "completed")
            self.assertIsNone(o.error)
            self.assertEqual(o.attempts, 1)
            self.assertEqual(o.result, {"processed": True, "type": type_, "bytes": sent})
            self.assertGreaterEqual(o.wait_time_ms, 0)
            self.assertGreaterEqual(o.processing_time_ms, 0)

    def test_python_producer_with_cpp_worker(self):
        self.agent.start_worker("py.echo")
        q = self.queue()
        self.check_echo(q, "py.echo")
        st = q.status(q.submit("py.echo", {}).request_id)
        self.assertEqual(st.user_id, "alice")

    def test_python_producer_with_python_worker_example(self):
        self.agent.start_worker("py.echo", python=True)
        self.check_echo(self.queue(), "py.echo")

    def test_python_worker_example_fails_the_fail_types_for_good(self):
        self.agent.start_worker("--fail", "py.broken", "py.echo", python=True)
        q = self.queue()
        o = q.result(q.submit("py.broken", {}), timeout=WAIT_S)
        self.assertEqual((o.status, o.error, o.attempts), ("failed", "PROCESSOR_ERROR", 1))
        self.assertEqual(o.message, "rejected by example")

    def run_example(self, name, *args):
        r = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), "--queue",
                            self.agent.queue] + list(args), env=python_env(),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=WAIT_S)
        return r

    def test_examples_producer_worker_and_await_result(self):
        self.agent.start_worker("ex.echo", python=True)
        r = self.run_example("producer.py", "--type", "ex.echo", "--count", "5")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out["submitted"], 5)
        self.assertEqual(len(out["requestIds"]), 5)

        r = self.run_example("await_result.py", "--type", "ex.echo", "--payload",
                             '{"a": 1}', "--timeout", str(WAIT_S))
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.decode().splitlines()
        self.assertEqual(len(lines), 1)
        o = json.loads(lines[0])
        self.assertEqual(o["status"], "completed")
        self.assertEqual(o["result"], {"processed": True, "type": "ex.echo", "bytes": 7})
        self.assertIsNone(o["error"])
        self.assertEqual(o["attempts"], 1)

    def test_await_result_example_with_the_cpp_worker(self):
        self.agent.start_worker("ex.echo")
        r = self.run_example("await_result.py", "--type", "ex.echo")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["result"]["type"], "ex.echo")

    def test_worker_example_exits_cleanly_on_sigterm_and_sigint(self):
        import signal
        for sig in (signal.SIGTERM, signal.SIGINT):
            w = self.agent.start_worker("ex.echo", python=True)
            w.send_signal(sig)
            self.assertEqual(w.wait(WAIT_S), 0)

    def test_batch_mode_reaches_a_python_batch_processor_in_another_process(self):
        # A batch processor registered by a child Python process.
        code = (
            "import sys, threading, signal, perfq\n"
            "stop = threading.Event()\n"
            "signal.signal(signal.SIGTERM, lambda *_: stop.set())\n"
            "q = perfq.Queue(sys.argv[1])\n"
            "q.register_batch_processor('b.sum', lambda items: [\n"
            "    {'n': len(items), 'x': p['x']} if p['x'] != 3 else ValueError('three')\n"
            "    for p, ctx in items])\n"
            "print('ready', flush=True)\n"
            "q.run_worker(stop)\n"
            "q.close()\n")
        w = subprocess.Popen([sys.executable, "-c", code, self.agent.queue],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=python_env())
        self.agent.workers.append(w)
        from support import read_line
        self.assertEqual(read_line(w.stdout), "ready")
        q = self.queue()
        subs = [q.submit("b.sum", {"x": x}, mode="batch") for x in range(5)]
        outs = [q.result(s, timeout=WAIT_S) for s in subs]
        for x, o in enumerate(outs):
            if x == 3:
                self.assertEqual((o.status, o.error), ("failed", "PROCESSOR_ERROR"))
                self.assertEqual(o.message, "ValueError: three")
            else:
                self.assertEqual(o.status, "completed")
                self.assertEqual(o.result["x"], x)


class SameProcess(AgentTestCase):
    def test_idempotent_submit_returns_the_original(self):
        alice = self.queue()
        a = alice.submit("t.nobody", {}, idempotency_key="k-1")
        again = alice.submit("t.nobody", {"other": 1}, idempotency_key="k-1")
        self.assertTrue(again.duplicate)
        self.assertEqual(again.request_id, a.request_id)
        self.assertEqual(again.status, "pending")
        bob = self.queue(user_id="bob")
        b = bob.submit("t.nobody", {}, idempotency_key="k-1")  # per user
        self.assertFalse(b.duplicate)
        self.assertNotEqual(b.request_id, a.request_id)
        alice.cancel(a)
        self.assertEqual(alice.result(again, timeout=WAIT_S).status, "cancelled")

    def test_processor_context_payload_kinds_and_results(self):
        from support import WorkerThread
        q = self.queue()
        seen = []

        def proc(payload, ctx):
            seen.append((payload, ctx))
            return payload if isinstance(payload, bytes) else {"got": payload}

        q.register_processor("t.ctx", proc)
        w = WorkerThread(q).start()
        self.addCleanup(w.join)
        o = q.result(q.submit("t.ctx", {"a": [1, 2]}, mode="priority", priority=15,
                              metadata={"trace": "t-1"}), timeout=WAIT_S)
        self.assertEqual(o.result, {"got": {"a": [1, 2]}})
        payload, ctx = seen[-1]
        self.assertEqual((ctx.type, ctx.user_id, ctx.mode, ctx.priority, ctx.attempt),
                         ("t.ctx", "alice", "priority", 15, 1))
        self.assertEqual(ctx.metadata, {"trace": "t-1"})
        self.assertEqual(ctx.payload_bytes, len(b'{"a":[1,2]}'))
        self.assertRegex(ctx.request_id, r"^[0-9a-f]{16}$")
        # bytes that are not JSON travel as bytes both ways; empty is None
        o = q.result(q.submit("t.ctx", b"\xff\x00raw"), timeout=WAIT_S)
        self.assertEqual(o.result, b"\xff\x00raw")
        o = q.result(q.submit("t.ctx"), timeout=WAIT_S)
        self.assertEqual(o.result, {"got": None})
        self.assertIsNone(seen[-1][1].metadata)


if __name__ == "__main__":
    unittest.main()
