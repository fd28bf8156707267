"""Test point 2: every error code a client can meet surfaces as the matching
exception with .code; outcome codes arrive in result().

Codes that cannot arise through this API: UNAUTHORIZED and FORBIDDEN (HTTP
auth only: the binding is in the segment's group or it cannot attach at
all), CONFLICT (the DLQ review verb, or registering one type with both kinds
of processor), WORKER_UNAVAILABLE (shown in health/status, never raised),
SEGMENT_INVALID and INTERNAL (a broken segment). CANCELLED, QUEUE_TIMEOUT,
PROCESSING_TIMEOUT and WORKER_DIED are outcome codes (Outcome.error), all
reached here.
"""
import os
import threading
import time
import unittest

import perfq
from support import WAIT_S, Agent, AgentTestCase, WorkerThread


class ValidationErrors(AgentTestCase):
    def assertCode(self, cls, code, fn, *args, **kw):
        with self.assertRaises(cls) as cm:
            fn(*args, **kw)
        e = cm.exception
        self.assertIsInstance(e, perfq.Error)
        self.assertEqual(e.code, code)
        return e

    def test_invalid_request(self):
        q = self.queue()
        for bad_type in ("", "a b", "x" * 65, "é"):
            e = self.assertCode(perfq.InvalidRequestError, "INVALID_REQUEST", q.submit, bad_type)
            self.assertEqual(e.status_code, 400)
        self.assertCode(perfq.InvalidRequestError, "INVALID_REQUEST", q.submit, 42)
        secret = "s3cr3t-payload-" + "y" * 5000
        e = self.assertCode(perfq.InvalidRequestError, "INVALID_REQUEST", q.submit, "t.ok",
                            {"secret": secret})
        self.assertNotIn("s3cr3t", str(e))
        for key in ("", "k" * 129, "bad\x01key", "caf\u00e9"):
            e = self.assertCode(perfq.InvalidRequestError, "INVALID_REQUEST", q.submit, "t.ok",
                                {}, idempotency_key=key)
            if key:
                self.assertNotIn(key, str(e))
        self.assertCode(perfq.InvalidRequestError, "INVALID_REQUEST", q.submit, "t.ok", {},
                        metadata={"m": "z" * 600})
        self.assertCode(perfq.InvalidRequestError, "INVALID_REQUEST", q.submit, "t.ok", {},
                        metadata=["not", "a", "dict"])
        self.assertCode(perfq.InvalidRequestError, "INVALID_REQUEST", q.submit, "t.ok", "text")
        self.assertCode(perfq.InvalidRequestError, "INVALID_REQUEST", q.submit, "t.ok",
                        {"x": object()})
        self.assertCode(perfq.InvalidRequestError, "INVALID_REQUEST", q.status, "not-an-id")
        # the largest payload fits
        q.submit("t.ok", b"p" * 4096)

    def test_invalid_user_id(self):
        for bad in ("", "a b", "u" * 65, "x/y"):
            self.assertCode(perfq.InvalidRequestError, "INVALID_REQUEST", perfq.Queue,
                            self.agent.queue, user_id=bad)
        q = self.queue(user_id=None)  # a worker-only Queue cannot submit
        self.assertCode(perfq.InvalidRequestError, "INVALID_REQUEST", q.submit, "t.ok")

    def test_invalid_mode(self):
        q = self.queue()
        for mode in ("lifo", "", "FIFO", 3):
            e = self.assertCode(perfq.InvalidModeError, "INVALID_MODE", q.submit, "t.ok", {},
                                mode=mode)
            self.assertEqual(e.status_code, 400)
        for mode in ("fifo", "priority", "batch"):
            self.assertEqual(q.submit("t.ok", {}, mode=mode).mode, mode)

    def test_invalid_priority(self):
        q = self.queue()
        for p in (0, 21, -1, 2 ** 70, True, 5.0, "5"):
            self.assertCode(perfq.InvalidPriorityError, "INVALID_PRIORITY", q.submit, "t.ok", {},
                            priority=p)
        self.assertEqual(q.submit("t.ok", {}, priority=1).priority, 1)
        s = q.submit("t.ok", {}, mode="priority", priority=20)
        self.assertEqual((s.priority, s.band), (20, "CRITICAL"))

    def test_not_found(self):
        alice = self.queue()
        bob = self.queue(user_id="bob")
        s = alice.submit("t.nobody", {})
        for call in (bob.status, bob.cancel, bob.result):
            e = self.assertCode(perfq.NotFoundError, "NOT_FOUND", call, s.request_id)
            self.assertEqual(e.status_code, 404)
        for call in (alice.status, alice.cancel, alice.result):
            self.assertCode(perfq.NotFoundError, "NOT_FOUND", call, "ffffffffffffff00")
        # an admin sees and cancels anyone's request
        admin = self.queue(user_id=None, admin=True)
        self.assertEqual(admin.status(s.request_id).user_id, "alice")
        admin.cancel(s.request_id)
        self.assertEqual(alice.result(s, timeout=WAIT_S).status, "cancelled")

    def test_invalid_status_when_cancelling_a_finished_request(self):
        q = self.queue()
        s = q.submit("t.nobody", {})
        q.cancel(s.request_id)
        o = q.result(s.request_id, timeout=WAIT_S)
        self.assertEqual((o.status, o.error, o.attempts), ("cancelled", "CANCELLED", 0))
        e = self.assertCode(perfq.InvalidStatusError, "INVALID_STATUS", q.cancel, s.request_id)
        self.assertEqual(e.status_code, 400)
        self.assertEqual(q.status(s.request_id).status, "cancelled")
        self.assertEqual(q.status(s.request_id).error, "CANCELLED")

    def test_result_collected_once_then_not_found(self):
        q = self.queue()
        s = q.submit("t.nobody", {})
        q.cancel(s)
        q.result(s, timeout=WAIT_S)
        self.assertCode(perfq.NotFoundError, "NOT_FOUND", q.result, s)

    def test_forget_ends_a_wait_with_not_found(self):
        q = self.queue()
        s = q.submit("t.nobody", {})
        ended = []

        def wait():
            try:
                q.result(s, timeout=WAIT_S)
            except perfq.NotFoundError as e:
                ended.append(e.code)

        t = threading.Thread(target=wait)
        t.start()
        while q._core.waiting() < 1 and t.is_alive():
            time.sleep(0)  # yield; bounded by the wait's own timeout
        self.assertTrue(q.forget(s))
        t.join(WAIT_S)
        self.assertEqual(ended, ["NOT_FOUND"])
        self.assertFalse(q.forget(s))

    def test_worker_misuse(self):
        q = self.queue(user_id=None)
        self.assertCode(perfq.InvalidRequestError, "INVALID_REQUEST", q.run_worker)
        self.assertCode(perfq.InvalidRequestError, "INVALID_REQUEST", q.register_processor,
                        "bad type", print)
        q.register_processor("t.single", print)
        e = self.assertCode(perfq.ConflictError, "CONFLICT", q.register_batch_processor,
                            "t.single", print)
        self.assertEqual(e.status_code, 409)

    def test_no_segment(self):
        e = self.assertCode(perfq.AgentUnavailableError, "AGENT_UNAVAILABLE", perfq.Queue,
                            f"pyt-nosuch-{os.getpid()}", user_id="alice")
        self.assertEqual(e.status_code, 503)
        self.assertCode(perfq.InvalidRequestError, "INVALID_REQUEST", perfq.Queue, "bad/name",
                        user_id="alice")

    def test_every_call_after_close_raises_closed_error(self):
        q = self.queue()
        s = q.submit("t.nobody", {})
        q.close()
        q.close()  # idempotent
        for call, args in ((q.submit, ("t.ok",)), (q.result, (s,)), (q.status, (s,)),
                           (q.cancel, (s,)), (q.register_processor, ("t.ok", print)),
                           (q.run_worker, ()), (q.on, ("*", print)), (q.forget, (s,))):
            with self.assertRaises(perfq.ClosedError):
                call(*args)
        self.assertIsNone(q.off("*"))  # cleanup, like close(): nothing to remove


class RateLimit(unittest.TestCase):
    def test_rate_limit_exceeded_with_retry_after(self):
        agent = Agent("--max-requests-per-user-per-minute", 2, rate_limit_off=False)
        self.addCleanup(agent.close)
        q = perfq.Queue(agent.queue, user_id="alice")
        self.addCleanup(q.close)
        q.submit("t.ok", {})
        q.submit("t.ok", {})
        with self.assertRaises(perfq.RateLimitExceededError) as cm:
            q.submit("t.ok", {})
        e = cm.exception
        self.assertEqual((e.code, e.status_code), ("RATE_LIMIT_EXCEEDED", 429))
        self.assertIsInstance(e.retry_after_ms, int)
        self.assertGreater(e.retry_after_ms, 0)
        self.assertLessEqual(e.retry_after_ms, 61_000)  # the window, rounded up
        # per user: bob is not limited by alice's submits
        with perfq.Queue(agent.queue, user_id="bob") as bob:
            bob.submit("t.ok", {})


class QueueFull(AgentTestCase):
    AGENT_FLAGS = ("--max-queue-depth", 1, "--rope-drop-timeout-ms", 100)

    def test_queue_full_after_the_rope_drop_wait_and_at_once_without_it(self):
        q = self.queue()
        q.submit("t.nobody", {})
        for wait in (True, False):
            with self.assertRaises(perfq.QueueFullError) as cm:
                q.submit("t.nobody", {}, wait=wait)
            self.assertEqual((cm.exception.code, cm.exception.status_code), ("QUEUE_FULL", 503))
            self.assertIsNone(cm.exception.retry_after_ms)


class QueueTimeout(AgentTestCase):
    AGENT_FLAGS = ("--queue-timeout-ms", 100)

    def test_queue_timeout_outcome(self):
        q = self.queue()
        o = q.result(q.submit("t.nobody", {}), timeout=WAIT_S)
        self.assertEqual((o.status, o.error, o.attempts), ("timeout", "QUEUE_TIMEOUT", 0))


class ProcessingTimeout(AgentTestCase):
    AGENT_FLAGS = ("--processing-timeout-ms", 200, "--max-retry-attempts", 1)

    def test_processing_timeout_outcome(self):
        q = self.queue()
        release = threading.Event()
        q.register_processor("t.slow", lambda p, c: release.wait(WAIT_S) and {"late": True})
        w = WorkerThread(q).start()
        self.addCleanup(w.join)
        self.addCleanup(release.set)
        o = q.result(q.submit("t.slow", {}), timeout=WAIT_S)
        self.assertEqual((o.status, o.error), ("failed", "PROCESSING_TIMEOUT"))


if __name__ == "__main__":
    unittest.main()


class WorkerDied(AgentTestCase):
    AGENT_FLAGS = ("--max-retry-attempts", 1, "--worker-idle-timeout-ms", 1000)

    def test_worker_died_outcome(self):
        import signal
        import subprocess
        import sys
        from support import python_env, read_line
        code = (
            "import sys, threading, perfq\n"
            "q = perfq.Queue(sys.argv[1])\n"
            "def hang(p, c):\n"
            "    print('running', flush=True)\n"
            "    threading.Event().wait()\n"
            "q.register_processor('t.hang', hang)\n"
            "q.run_worker()\n")
        w = subprocess.Popen([sys.executable, "-c", code, self.agent.queue],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=python_env())
        self.addCleanup(w.stdout.close)
        q = self.queue()
        s = q.submit("t.hang", {})
        self.assertEqual(read_line(w.stdout), "running")
        w.send_signal(signal.SIGKILL)
        w.wait(WAIT_S)
        o = q.result(s, timeout=WAIT_S)
        self.assertEqual((o.status, o.error), ("failed", "WORKER_DIED"))
