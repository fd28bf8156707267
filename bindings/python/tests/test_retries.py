"""Test point 3: a raising processor is retried max_retry_attempts times, then
the request is `failed` and in the DLQ; PermanentError goes to the DLQ after
one attempt."""
import threading
import unittest

import perfq
from support import WAIT_S, AgentTestCase, WorkerThread


class Retries(AgentTestCase):
    AGENT_FLAGS = ("--max-retry-attempts", 3, "--retry-backoff-ms", 10)

    def setUp(self):
        super().setUp()
        self.q = self.queue()
        self.attempts = {}
        self.lock = threading.Lock()

        def flaky(payload, ctx):
            with self.lock:
                self.attempts.setdefault(ctx.request_id, []).append(ctx.attempt)
            raise ValueError(f"attempt {ctx.attempt} failed")

        def permanent(payload, ctx):
            with self.lock:
                self.attempts.setdefault(ctx.request_id, []).append(ctx.attempt)
            raise perfq.PermanentError("not worth retrying")

        def second_time_lucky(payload, ctx):
            if ctx.attempt < 2:
                raise RuntimeError("transient")
            return {"attempt": ctx.attempt}

        self.q.register_processor("t.flaky", flaky)
        self.q.register_processor("t.permanent", permanent)
        self.q.register_processor("t.lucky", second_time_lucky)
        self.worker = WorkerThread(self.q).start()
        self.addCleanup(self.worker.join)

    def dlq_entry(self, request_id):
        entries = [e for e in self.agent.dlq()["entries"]
                   if e["originalRequestId"] == request_id]
        self.assertEqual(len(entries), 1)
        return entries[0]

    def test_raising_processor_is_retried_then_failed_and_dead_lettered(self):
        s = self.q.submit("t.flaky", {"secret": "payload-text"})
        o = self.q.result(s, timeout=WAIT_S)
        self.assertEqual((o.status, o.error, o.attempts), ("failed", "PROCESSOR_ERROR", 3))
        self.assertEqual(o.message, "ValueError: attempt 3 failed")
        self.assertEqual(self.attempts[s.request_id], [1, 2, 3])
        st = self.q.status(s)
        self.assertEqual((st.status, st.error, st.attempts), ("failed", "PROCESSOR_ERROR", 3))
        e = self.dlq_entry(s.request_id)
        self.assertEqual((e["status"], e["failureReason"], e["attemptCount"], e["userId"]),
                         ("failed", "PROCESSOR_ERROR", 3, "alice"))

    def test_permanent_error_goes_to_the_dlq_after_one_attempt(self):
        s = self.q.submit("t.permanent", {})
        o = self.q.result(s, timeout=WAIT_S)
        self.assertEqual((o.status, o.error, o.attempts), ("failed", "PROCESSOR_ERROR", 1))
        self.assertEqual(o.message, "not worth retrying")
        self.assertEqual(self.attempts[s.request_id], [1])
        self.assertEqual(self.dlq_entry(s.request_id)["attemptCount"], 1)

    def test_a_retry_that_succeeds_completes(self):
        o = self.q.result(self.q.submit("t.lucky", {}), timeout=WAIT_S)
        self.assertEqual((o.status, o.attempts, o.result), ("completed", 2, {"attempt": 2}))
        self.assertEqual(self.agent.dlq()["entries"], [])


if __name__ == "__main__":
    unittest.main()
