"""How the Queue keeps outcomes: a fire-and-forget producer never leaks
slots (forget()), max_uncollected counts only uncollected outcomes, and a
result_async() that times out or is cancelled withdraws its callback."""
import asyncio
import gc
import sys
import threading
import time
import unittest

import perfq
from support import WAIT_S, AgentTestCase

SLOTS = 64  # the agent's minimum


def wait_until(predicate, what):
    """Waits (bounded) for a state the Queue reaches by itself."""
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0)


class ForgetFreesSlots(AgentTestCase):
    """A slot is freed only when its producer drains the outcome, so the
    completion thread must keep draining for forgotten requests."""

    AGENT_FLAGS = ("--slots", SLOTS)

    def test_fire_and_forget_never_runs_out_of_slots(self):
        q = self.queue()
        batch = SLOTS * 3 // 4  # two batches need more than SLOTS slots
        # Queued while no worker runs: their outcomes arrive after forget().
        first = [q.submit("t.echo", {}, wait=False) for _ in range(batch)]
        for s in first:
            self.assertTrue(q.forget(s))
        self.agent.start_worker("t.echo")
        # Every forgotten outcome arrived and was drained (its slot freed).
        wait_until(lambda: q._core.forgotten() == 0 and q.status(first[-1]).status == "completed",
                   "the forgotten outcomes to be drained")
        for _ in range(batch):
            s = q.submit("t.echo", {}, wait=False)  # QueueFullError once slots leak
            q.forget(s)
        self.assertEqual(q._core.tracked(), 0)


class ConcurrentResults(AgentTestCase):
    """Calls waiting on one request when it settles all get its outcome
    (the first to collect it leaves a copy for the others)."""

    def test_every_call_waiting_when_it_settles_gets_the_outcome(self):
        q = self.queue()
        s = q.submit("t.nobody", {})  # no worker: it settles when cancelled
        got, errors = [], []

        def wait():
            try:
                got.append(q.result(s, timeout=WAIT_S))
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                errors.append(e)

        threads = [threading.Thread(target=wait) for _ in range(3)]
        for t in threads:
            t.start()
        wait_until(lambda: q._core.waiting() == 3, "three calls to wait")
        q.cancel(s)
        for t in threads:
            t.join(WAIT_S)
        self.assertEqual(errors, [])
        self.assertEqual([o.status for o in got], ["cancelled"] * 3)
        # Collected: a later call finds nothing, and nothing is kept for it.
        with self.assertRaises(perfq.NotFoundError):
            q.result(s, timeout=0)
        self.assertEqual(q._core.tracked(), 0)


class MaxUncollected(AgentTestCase):
    def settle(self, q, s):
        """Waits until the outcome of `s` is in, without collecting it."""
        settled = threading.Event()
        if not q._core.watch(s.request_id, settled.set):
            self.assertTrue(settled.wait(WAIT_S), "the outcome did not arrive")

    def test_collected_outcomes_do_not_count(self):
        q = self.queue(max_uncollected=2)
        a = q.submit("t.nobody", {})
        q.cancel(a)
        self.settle(q, a)
        for _ in range(2):  # two more settle and are collected
            b = q.submit("t.nobody", {})
            q.cancel(b)
            self.assertEqual(q.result(b, timeout=WAIT_S).status, "cancelled")
        self.assertEqual(q.result(a, timeout=0).status, "cancelled")

    def test_forgotten_outcomes_do_not_count(self):
        q = self.queue(max_uncollected=2)
        a = q.submit("t.nobody", {})
        q.cancel(a)
        self.settle(q, a)
        for _ in range(2):
            b = q.submit("t.nobody", {})
            q.cancel(b)
            self.settle(q, b)
            self.assertTrue(q.forget(b))
        self.assertEqual(q.result(a, timeout=0).status, "cancelled")

    def test_uncollected_outcomes_beyond_the_bound_are_dropped_oldest_first(self):
        q = self.queue(max_uncollected=2)
        subs = []
        for _ in range(3):
            s = q.submit("t.nobody", {})
            q.cancel(s)
            self.settle(q, s)
            subs.append(s)
        with self.assertRaises(perfq.NotFoundError):
            q.result(subs[0], timeout=0)
        self.assertEqual([q.result(s, timeout=0).status for s in subs[1:]],
                         ["cancelled", "cancelled"])


class ResultAsyncWithdraws(AgentTestCase):
    def test_timed_out_and_cancelled_awaits_leave_no_callback(self):
        q = self.queue()
        s = q.submit("t.later", {})
        gc.collect()
        refs = sys.getrefcount(q)

        async def main():
            for _ in range(200):
                with self.assertRaises(TimeoutError):
                    await q.result_async(s, timeout=0.001)  # nobody serves t.later yet
            task = asyncio.ensure_future(q.result_async(s))
            while q._core.watchers() == 0:  # the task is now awaiting (bounded by WAIT_S below)
                await asyncio.sleep(0)
            task.cancel()
            with self.assertRaises(asyncio.CancelledError):
                await task

        asyncio.run(asyncio.wait_for(main(), WAIT_S))
        self.assertEqual(q._core.watchers(), 0)
        gc.collect()
        self.assertEqual(sys.getrefcount(q), refs)
        # The outcome is still collectable.
        self.agent.start_worker("t.later")
        self.assertEqual(q.result(s, timeout=WAIT_S).status, "completed")


if __name__ == "__main__":
    unittest.main()
