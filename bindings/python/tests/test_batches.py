"""Issue 14: run_worker takes dispatches in batches and holds the GIL once for
each batch; async processors of a batch are awaited together; submit_many
answers each request on its own; forget=True leaves nothing to collect.
Every wait is bounded; no timing is asserted."""
import asyncio
import json
import threading
import time
import unittest

import perfq
from support import WAIT_S, AgentTestCase, WorkerThread


class AsyncProcessors(AgentTestCase):
    def test_async_processors_of_a_batch_run_concurrently(self):
        q = self.queue()
        # Each coroutine waits until all four have started: only awaiting
        # them together lets any of them finish.
        started = []

        async def together(payload, ctx):
            started.append(payload["i"])
            for _ in range(10000):
                if len(started) >= 4:
                    break
                await asyncio.sleep(0)
            if len(started) < 4:
                raise RuntimeError("the others never started")
            await asyncio.sleep(0)
            return {"i": payload["i"], "seen": len(started) >= 4}

        q.register_processor("async.t", together)
        # Submitted before the worker runs: its first take holds all four.
        subs = [q.submit("async.t", {"i": i}) for i in range(4)]
        worker = WorkerThread(q).start()
        self.addCleanup(worker.join)
        for i, s in enumerate(subs):
            o = q.result(s, timeout=WAIT_S)
            self.assertEqual(o.status, "completed", o.message)
            self.assertEqual(o.result, {"i": i, "seen": True})

    def test_async_errors_fail_the_attempt_and_permanent_ones_go_to_the_dlq(self):
        q = self.queue()

        async def failing(payload, ctx):
            await asyncio.sleep(0)
            if payload["kind"] == "permanent":
                raise perfq.PermanentError("no use retrying")
            raise ValueError("try again")

        q.register_processor("async.fail", failing)
        worker = WorkerThread(q).start()
        self.addCleanup(worker.join)
        o = q.result(q.submit("async.fail", {"kind": "permanent"}), timeout=WAIT_S)
        self.assertEqual(o.status, "failed")
        self.assertEqual(o.attempts, 1)
        self.assertEqual(o.message, "no use retrying")
        o = q.result(q.submit("async.fail", {"kind": "transient"}), timeout=WAIT_S)
        self.assertEqual(o.status, "failed")
        self.assertGreater(o.attempts, 1)
        self.assertEqual(o.message, "ValueError: try again")

    def test_an_async_batch_processor(self):
        q = self.queue()

        async def double(items):
            await asyncio.sleep(0)
            return [it.payload["n"] * 2 for it in items]

        q.register_batch_processor("async.batch", double)
        worker = WorkerThread(q).start()
        self.addCleanup(worker.join)
        subs = [q.submit("async.batch", {"n": n}, mode="batch") for n in range(5)]
        self.assertEqual([q.result(s, timeout=WAIT_S).result for s in subs], [0, 2, 4, 6, 8])


class GilOncePerBatch(AgentTestCase):
    def test_one_take_runs_every_processor_it_took_under_one_gil_hold(self):
        q = self.queue()
        q.register_processor("gil.batch", lambda p, c: None)
        subs = [q.submit("gil.batch", {"i": i}) for i in range(8)]

        # All eight dispatched to the worker (it holds up to 16) before it runs.
        def dispatched():
            r = self.agent.ctl("--json", "health")
            return r.returncode == 0 and json.loads(r.stdout)["processingCount"] == 8
        deadline = time.monotonic() + WAIT_S
        while not dispatched():
            self.assertLess(time.monotonic(), deadline, "never dispatched")
        worker = WorkerThread(q).start()
        self.addCleanup(worker.join)
        for s in subs:
            self.assertEqual(q.result(s, timeout=WAIT_S).status, "completed")
        self.assertEqual(q._worker.gil_holds(), 1)


class SubmitMany(AgentTestCase):
    def test_each_request_is_answered_on_its_own(self):
        q = self.queue()
        q.register_processor("many.t", lambda p, c: {"n": p["n"]})
        worker = WorkerThread(q).start()
        self.addCleanup(worker.join)
        answers = q.submit_many([
            {"type": "many.t", "payload": {"n": 1}},
            {"type": "many.t", "payload": {"n": 2}, "priority": 99},
            {"type": "bad type!", "payload": {}},
            "not a dict",
            {"type": "many.t", "payload": {"n": 3}, "mode": "priority", "priority": 12},
            {"type": "many.t", "payload": {"n": 4}, "idempotency_key": "k1"},
            {"type": "many.t", "payload": {"n": 5}, "idempotency_key": "k1"},
        ])
        self.assertEqual(len(answers), 7)
        self.assertIsInstance(answers[0], perfq.Submitted)
        self.assertIsInstance(answers[1], perfq.InvalidPriorityError)
        self.assertIsInstance(answers[2], perfq.InvalidRequestError)
        self.assertIsInstance(answers[3], perfq.InvalidRequestError)
        self.assertEqual(answers[4].band, "HIGH")
        self.assertFalse(answers[5].duplicate)
        self.assertTrue(answers[6].duplicate)
        self.assertEqual(answers[6].request_id, answers[5].request_id)
        for i, n in ((0, 1), (4, 3), (5, 4)):
            self.assertEqual(q.result(answers[i], timeout=WAIT_S).result, {"n": n})

    def test_forgotten_requests_leave_nothing_to_collect(self):
        q = self.queue()
        done = threading.Semaphore(0)

        def proc(p, c):
            done.release()
            return None

        q.register_processor("many.f", proc)
        worker = WorkerThread(q).start()
        self.addCleanup(worker.join)
        answers = q.submit_many([{"type": "many.f", "payload": {"i": i}} for i in range(20)],
                                forget=True)
        one = q.submit("many.f", {}, forget=True)
        for _ in range(21):
            self.assertTrue(done.acquire(timeout=WAIT_S))
        for a in answers + [one]:
            with self.assertRaises(perfq.NotFoundError):
                q.result(a, timeout=0)
        self.assertEqual(q._core.tracked(), 0)


if __name__ == "__main__":
    unittest.main()
