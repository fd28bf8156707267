"""Ctrl-C reaches a blocked result(), a submit waiting for room and
run_worker (KeyboardInterrupt; close() ends the submit too, also from a
SIGTERM handler that runs inside that wait), and
SIGTERM stops the worker example (test_roundtrip). The signal is sent once
the child is known to be blocked (QueueCore.waiting(), or a processor ran)."""
import signal
import subprocess
import sys
import unittest

from support import WAIT_S, AgentTestCase, python_env, read_line

RESULT_CHILD = r"""
import os, signal, sys, threading, time
import perfq
q = perfq.Queue(sys.argv[1], user_id="alice")
s = q.submit("t.nobody", {})
def interrupt():
    deadline = time.monotonic() + 30
    while q._core.waiting() < 1 and time.monotonic() < deadline:
        time.sleep(0)
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=interrupt).start()
try:
    q.result(s)
    print("returned")
except KeyboardInterrupt:
    print("interrupted")
q.close()
"""

WORKER_CHILD = r"""
import sys
import perfq
q = perfq.Queue(sys.argv[1])
def any_(payload, ctx):
    print("running", flush=True)  # run_worker is running: the parent may interrupt it
    return {}
q.register_processor("t.any", any_)
try:
    q.run_worker()
    print("returned")
except KeyboardInterrupt:
    print("interrupted")
q.close()
"""


SUBMIT_CHILD = r"""
import os, signal, sys, threading, time
import perfq
q = perfq.Queue(sys.argv[1], user_id="alice")
q.submit("t.nobody", {})  # the queue (depth 1) is now full
how = sys.argv[2]
def interrupt():
    deadline = time.monotonic() + 30
    while q._core.waiting() < 1 and time.monotonic() < deadline:
        time.sleep(0)
    if how == "signal":
        os.kill(os.getpid(), signal.SIGINT)
    else:
        q.close()
threading.Thread(target=interrupt).start()
try:
    q.submit("t.nobody", {})  # waits for room: rope_drop_timeout_ms is 10 minutes
    print("returned")
except KeyboardInterrupt:
    print("interrupted")
except perfq.ClosedError:
    print("closed")
q.close()
"""


# A SIGTERM handler that calls close() runs inside the wait it interrupts
# (result(), or a submit waiting for room): close() must not wait for that
# very call, which ends with ClosedError once the handler returns.
CLOSE_IN_HANDLER_CHILD = r"""
import os, signal, sys, threading, time
import perfq
q = perfq.Queue(sys.argv[1], user_id="alice")
signal.signal(signal.SIGTERM, lambda *a: q.close())
s = q.submit("t.nobody", {})  # the queue (depth 1) is now full
def interrupt():
    deadline = time.monotonic() + 30
    while q._core.waiting() < 1 and time.monotonic() < deadline:
        time.sleep(0)
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=interrupt).start()
try:
    if sys.argv[2] == "result":
        q.result(s)
    else:
        q.submit("t.nobody", {})  # waits for room
    print("returned")
except perfq.ClosedError:
    print("closed")
print("closed for good" if q.closed else "open", flush=True)
"""


class ChildTestCase(AgentTestCase):
    def child(self, code, *args):
        proc = subprocess.Popen([sys.executable, "-c", code, self.agent.queue, *args],
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=python_env())
        self.addCleanup(proc.stdout.close)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        return proc


class Signals(ChildTestCase):
    def test_ctrl_c_interrupts_result(self):
        proc = self.child(RESULT_CHILD)
        self.assertEqual(read_line(proc.stdout), "interrupted")
        self.assertEqual(proc.wait(WAIT_S), 0)

    def test_ctrl_c_interrupts_run_worker(self):
        proc = self.child(WORKER_CHILD)
        q = self.queue()
        s = q.submit("t.any", {})
        self.assertEqual(read_line(proc.stdout), "running")
        self.assertEqual(q.result(s, timeout=WAIT_S).status, "completed")
        proc.send_signal(signal.SIGINT)
        self.assertEqual(read_line(proc.stdout), "interrupted")
        self.assertEqual(proc.wait(WAIT_S), 0)


class SubmitWaitingForRoom(ChildTestCase):
    """A submit waiting for room (rope_drop_timeout_ms is 10 minutes here)
    ends at once on Ctrl-C (KeyboardInterrupt) and on close() (ClosedError);
    a wait that noticed neither would outlast the test's bound."""

    AGENT_FLAGS = ("--max-queue-depth", 1, "--rope-drop-timeout-ms", 600000)

    def test_ctrl_c_interrupts_a_submit_waiting_for_room(self):
        proc = self.child(SUBMIT_CHILD, "signal")
        self.assertEqual(read_line(proc.stdout), "interrupted")
        self.assertEqual(proc.wait(WAIT_S), 0)

    def test_close_ends_a_submit_waiting_for_room(self):
        proc = self.child(SUBMIT_CHILD, "close")
        self.assertEqual(read_line(proc.stdout), "closed")
        self.assertEqual(proc.wait(WAIT_S), 0)


class CloseFromASignalHandler(ChildTestCase):
    AGENT_FLAGS = ("--max-queue-depth", 1, "--rope-drop-timeout-ms", 600000)

    def check(self, how):
        proc = self.child(CLOSE_IN_HANDLER_CHILD, how)
        self.assertEqual(read_line(proc.stdout), "closed")
        self.assertEqual(read_line(proc.stdout), "closed for good")
        self.assertEqual(proc.wait(WAIT_S), 0)

    def test_close_in_a_signal_handler_ends_the_result_it_interrupted(self):
        self.check("result")

    def test_close_in_a_signal_handler_ends_the_submit_it_interrupted(self):
        self.check("submit")


if __name__ == "__main__":
    unittest.main()
