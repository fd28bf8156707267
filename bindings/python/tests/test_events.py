"""Test point 7: the events of one request arrive in order (submitted ...
completed), with the agent's fields in snake_case, never a payload."""
import queue
import unittest

import perfq
from support import WAIT_S, AgentTestCase, WorkerThread

REQUEST_FIELDS = {"id", "event", "at", "request_id", "type", "user_id", "status", "priority",
                  "mode", "attempt"}
SECRET = "payload-secret-7f3a"


class Events(AgentTestCase):
    AGENT_FLAGS = ("--max-retry-attempts", 2, "--retry-backoff-ms", 10)

    def events_flowing(self, q, got=None):
        """Waits (bounded) until the agent writes events for this Queue's
        reader: it notices a new reader at its next liveness pass
        (liveness_interval_ms), so events right after on() could be lost.
        Probes with a request it cancels until that request's events show."""
        probe_q = got if got is not None else queue.Queue()
        if got is None:
            q.on("*", probe_q.put)
        for _ in range(100):
            s = q.submit("ev.probe", {})
            q.cancel(s)
            try:
                while True:
                    ev = probe_q.get(timeout=1)
                    if ev.get("request_id") == s.request_id and ev["event"] == "request.cancelled":
                        if got is None:
                            q.off("*", probe_q.put)
                        return
            except queue.Empty:
                continue
        self.fail("the agent never wrote events for this reader")

    def collect(self, got, request_id, last):
        """This request's events up to and including `last` (bounded)."""
        mine = []
        while True:
            ev = got.get(timeout=WAIT_S)
            self.assertNotIn(SECRET, repr(ev))
            self.assertNotIn("payload", ev)
            if ev.get("request_id") == request_id:
                mine.append(ev)
                if ev["event"] == last:
                    return mine

    def test_events_of_one_request_arrive_in_order_without_payload(self):
        self.agent.start_worker("ev.echo")
        q = self.queue()
        got = queue.Queue()
        q.on("*", got.put)
        self.events_flowing(q, got)
        s = q.submit("ev.echo", {"secret": SECRET}, mode="priority", priority=12,
                     metadata={"m": 1})
        self.assertEqual(q.result(s, timeout=WAIT_S).status, "completed")
        mine = self.collect(got, s.request_id, "request.completed")
        self.assertEqual([e["event"] for e in mine],
                         ["request.submitted", "request.assigned", "request.processing",
                          "request.completed"])
        self.assertEqual([e["status"] for e in mine],
                         ["pending", "assigned", "processing", "completed"])
        ids = [e["id"] for e in mine]
        self.assertEqual(ids, sorted(ids))
        for e in mine:
            self.assertEqual(set(e), REQUEST_FIELDS)  # no "error" when there is none
            self.assertEqual((e["type"], e["user_id"], e["mode"], e["priority"]),
                             ("ev.echo", "alice", "priority", 12))
            self.assertRegex(e["at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(mine[-1]["attempt"], 1)

    def test_failed_request_events_carry_the_error(self):
        q = self.queue()

        def broken(payload, ctx):
            raise ValueError("broken")

        q.register_processor("ev.broken", broken)
        w = WorkerThread(q).start()
        self.addCleanup(w.join)
        got = queue.Queue()
        q.on("*", got.put)
        self.events_flowing(q, got)
        s = q.submit("ev.broken", {"secret": SECRET})
        self.assertEqual(q.result(s, timeout=WAIT_S).status, "failed")
        mine = self.collect(got, s.request_id, "request.dead_lettered")
        names = [e["event"] for e in mine]
        self.assertEqual(names[0], "request.submitted")
        self.assertIn("request.retrying", names)
        self.assertIn("request.failed", names)
        self.assertLess(names.index("request.retrying"), names.index("request.failed"))
        failed = mine[names.index("request.failed")]
        self.assertEqual((failed["status"], failed["error"], failed["attempt"]),
                         ("failed", "PROCESSOR_ERROR", 2))

    def test_named_listener_and_off(self):
        q = self.queue()
        cancelled, everything = queue.Queue(), queue.Queue()
        q.on("*", everything.put)
        self.events_flowing(q, everything)
        q.on("request.cancelled", cancelled.put)
        s = q.submit("ev.nobody", {})
        self.collect(everything, s.request_id, "request.submitted")
        q.cancel(s)
        ev = cancelled.get(timeout=WAIT_S)
        self.assertEqual((ev["event"], ev["request_id"], ev["status"], ev["error"]),
                         ("request.cancelled", s.request_id, "cancelled", "CANCELLED"))
        self.assertEqual([e["event"] for e in self.collect(everything, s.request_id,
                                                           "request.cancelled")],
                         ["request.cancelled"])
        q.off("request.cancelled")
        q.off("*", everything.put)
        self.assertIsNone(q._event_thread)  # the last listener took the thread with it
        with self.assertRaises(perfq.InvalidRequestError):
            q.on("request.nonsense", print)

    def test_events_iterator(self):
        q = self.queue()
        self.events_flowing(q)
        it = q.events(timeout=WAIT_S)  # follows from here
        s = q.submit("ev.nobody", {"secret": SECRET})
        names = []
        for ev in it:
            self.assertNotIn(SECRET, repr(ev))
            if ev.get("request_id") != s.request_id:
                continue
            names.append(ev["event"])
            if ev["event"] == "request.submitted":
                q.cancel(s)
            if ev["event"] == "request.cancelled":
                break
        self.assertEqual(names, ["request.submitted", "request.cancelled"])


if __name__ == "__main__":
    unittest.main()
