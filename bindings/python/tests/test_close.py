"""Test point 5: closing with requests in flight is clean. A child process
submits requests no worker serves, waits for them in other threads (and in
asyncio), runs a worker and an event listener, calls close(): every wait
ends with ClosedError and the process exits by itself."""
import json
import signal
import subprocess
import sys
import unittest

from support import WAIT_S, AgentTestCase, python_env

CHILD = r"""
import asyncio, json, sys, threading, time
import perfq

q = perfq.Queue(sys.argv[1], user_id="alice")
subs = [q.submit("t.nobody", {"n": n}) for n in range(3)]
ended = []

def waiter(s):
    try:
        q.result(s, timeout=None)
        ended.append("returned")
    except perfq.ClosedError as e:
        ended.append(e.code)

threads = [threading.Thread(target=waiter, args=(s,)) for s in subs]
for t in threads:
    t.start()

loop = asyncio.new_event_loop()
async_result = []
async def wait_async(s):
    try:
        await q.result_async(s)
        async_result.append("returned")
    except perfq.ClosedError as e:
        async_result.append(e.code)
task = loop.create_task(wait_async(q.submit("t.nobody", {})))
loop.run_until_complete(asyncio.sleep(0))  # the task is now awaiting its outcome

q.register_processor("t.other", lambda p, c: {})
worker_end = []
wt = threading.Thread(target=lambda: (q.run_worker(), worker_end.append("returned")))
wt.start()
q.on("*", lambda ev: None)

# Wait (bounded) until the three threads are inside result().
deadline = time.monotonic() + 30
while q._core.waiting() < 3 and time.monotonic() < deadline:
    time.sleep(0)
in_result = q._core.waiting()

q.close()
for t in threads:
    t.join(30)
wt.join(30)
loop.run_until_complete(asyncio.wait_for(task, 30))
loop.close()
print(json.dumps({"in_result": in_result, "ended": ended, "async": async_result,
                  "worker": worker_end,
                  "alive": [t.name for t in threads + [wt] if t.is_alive()]}), flush=True)
"""

CHILD_WITHOUT_CLOSE = r"""
import sys, threading
import perfq
q = perfq.Queue(sys.argv[1], user_id="alice")
q.submit("t.nobody", {})
q.on("*", lambda ev: None)
q.register_processor("t.other", lambda p, c: {})
print("ok", flush=True)
# no close(): the interpreter must still exit (atexit closes the Queue)
"""


CHILD_DROPPED_BY_A_WATCHER = r"""
import asyncio, gc, sys, threading, weakref
import perfq
q = perfq.Queue(sys.argv[1], user_id="alice")
q.register_processor("t.unused", lambda p, c: {})  # its WorkerCore goes with the Queue
s = q.submit("t.later", {})
loop = asyncio.new_event_loop()
task = loop.create_task(q.result_async(s))
loop.run_until_complete(asyncio.sleep(0))   # awaiting: a watcher is registered
task.cancel()
loop.run_until_complete(asyncio.sleep(0))
loop.close()                                 # the watcher's loop is gone
finalized = threading.Event()
weakref.finalize(q, finalized.set)
del q, task
gc.collect()
# Now only the watcher (held by the native completion thread) keeps the
# Queue alive; once the outcome arrives, the completion thread drops it.
print("armed", flush=True)
print("finalized" if finalized.wait(30) else "still alive", flush=True)
"""


# close() from a SIGTERM handler while run_worker runs on the main thread:
# run_worker returns, a result() waiting on another thread ends with
# ClosedError, the Queue is closed for good and the process exits.
CHILD_CLOSE_FROM_A_SIGNAL_HANDLER = r"""
import json, signal, sys, threading, time
import perfq
q = perfq.Queue(sys.argv[1], user_id="alice")
def any_(payload, ctx):
    print("running", flush=True)  # run_worker runs: the parent may send SIGTERM
    return {}
q.register_processor("t.any", any_)
signal.signal(signal.SIGTERM, lambda *a: q.close())
s = q.submit("t.nobody", {})
waiter_end = []
def waiter():
    try:
        q.result(s)
        waiter_end.append("returned")
    except perfq.ClosedError as e:
        waiter_end.append(e.code)
wt = threading.Thread(target=waiter, daemon=True)
wt.start()
deadline = time.monotonic() + 30
while q._core.waiting() < 1 and time.monotonic() < deadline:
    time.sleep(0)
try:
    q.run_worker()
    worker_end = "returned"
except BaseException as e:
    worker_end = type(e).__name__
wt.join(30)
try:
    q.submit("t.any", {})
    after = "accepted"
except perfq.ClosedError as e:
    after = e.code
print(json.dumps({"worker": worker_end, "waiter": waiter_end, "closed": q.closed,
                  "submit_after": after}), flush=True)
"""

# close() while a processor of this Queue waits in this Queue's result() for
# a request nobody serves: the producer side closes first, so that wait ends
# (ClosedError) and run_worker returns.
CHILD_CLOSE_WHILE_A_PROCESSOR_WAITS_ON_THE_SAME_QUEUE = r"""
import json, sys, threading, time
import perfq
q = perfq.Queue(sys.argv[1], user_id="alice")
inside = threading.Event()
seen = []
def parent(payload, ctx):
    child = q.submit("t.child", {})  # nobody serves t.child
    inside.set()
    try:
        q.result(child)
        seen.append("returned")
    except perfq.ClosedError as e:
        seen.append(e.code)
        raise
    return {}
q.register_processor("t.parent", parent)
worker_end = []
wt = threading.Thread(target=lambda: (q.run_worker(), worker_end.append("returned")), daemon=True)
wt.start()
q.submit("t.parent", {})
deadline = time.monotonic() + 30
while not (inside.is_set() and q._core.waiting() >= 1) and time.monotonic() < deadline:
    time.sleep(0)
closer = threading.Thread(target=q.close, daemon=True)
closer.start()
closer.join(30)
wt.join(30)
print(json.dumps({"close_returned": not closer.is_alive(), "processor": seen,
                  "worker": worker_end}), flush=True)
"""


class CloseInFlight(AgentTestCase):
    def run_child(self, code):
        proc = subprocess.Popen([sys.executable, "-c", code, self.agent.queue],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=python_env())
        try:
            out, err = proc.communicate(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            self.fail("the process did not exit by itself")
        self.assertEqual(proc.returncode, 0, err.decode())
        return out.decode()

    def test_close_ends_every_wait_with_closed_error_and_the_process_exits(self):
        r = json.loads(self.run_child(CHILD))
        self.assertEqual(r["in_result"], 3)
        self.assertEqual(r["ended"], ["CLOSED"] * 3)
        self.assertEqual(r["async"], ["CLOSED"])
        self.assertEqual(r["worker"], ["returned"])
        self.assertEqual(r["alive"], [])

    def test_process_exits_without_close(self):
        self.assertEqual(self.run_child(CHILD_WITHOUT_CLOSE).strip(), "ok")

    def test_queue_released_by_the_completion_thread_is_destroyed_cleanly(self):
        from support import read_line
        proc = subprocess.Popen([sys.executable, "-c", CHILD_DROPPED_BY_A_WATCHER,
                                 self.agent.queue], stdout=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=python_env())
        self.addCleanup(proc.stdout.close)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        self.assertEqual(read_line(proc.stdout), "armed")
        self.agent.start_worker("t.later")
        self.assertEqual(read_line(proc.stdout), "finalized")
        self.assertEqual(proc.wait(WAIT_S), 0)

    def test_close_from_a_signal_handler_while_run_worker_runs_on_the_main_thread(self):
        from support import read_line
        proc = subprocess.Popen([sys.executable, "-c", CHILD_CLOSE_FROM_A_SIGNAL_HANDLER,
                                 self.agent.queue], stdout=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=python_env())
        self.addCleanup(proc.stdout.close)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        q = self.queue()
        s = q.submit("t.any", {})
        self.assertEqual(read_line(proc.stdout), "running")
        self.assertEqual(q.result(s, timeout=WAIT_S).status, "completed")
        proc.send_signal(signal.SIGTERM)
        r = json.loads(read_line(proc.stdout))
        self.assertEqual(r, {"worker": "returned", "waiter": ["CLOSED"], "closed": True,
                             "submit_after": "CLOSED"})
        self.assertEqual(proc.wait(WAIT_S), 0)

    def test_close_ends_a_processor_waiting_on_the_same_queue(self):
        r = json.loads(self.run_child(CHILD_CLOSE_WHILE_A_PROCESSOR_WAITS_ON_THE_SAME_QUEUE))
        self.assertEqual(r, {"close_returned": True, "processor": ["CLOSED"],
                             "worker": ["returned"]})

    def test_requests_stay_queued_after_their_producer_closed(self):
        import queue
        q = self.queue()
        s = q.submit("t.later", {})
        q.close()
        observer = self.queue()
        completed = queue.Queue()
        observer.on("request.completed", completed.put)
        self.agent.start_worker("t.later")
        ev = completed.get(timeout=WAIT_S)
        self.assertEqual(ev["request_id"], s.request_id)
        self.assertEqual(observer.status(s.request_id).status, "completed")


if __name__ == "__main__":
    unittest.main()
