"""How the Queue keeps outcomes: max_uncollected counts only uncollected
outcomes."""
import threading
import unittest

import perfq
from support import WAIT_S, AgentTestCase


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



if __name__ == "__main__":
    unittest.main()
