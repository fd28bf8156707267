"""Test point 6: the GIL is released while waiting. One thread blocks in
result() (or a coroutine awaits result_async()) on a request whose processor,
run by run_worker on another thread of this process, waits for a
threading.Event that the main thread sets once the processor has started.
Holding the GIL anywhere in that chain would stall it: every wait here is
bounded, and no timing is asserted."""
import asyncio
import threading
import unittest

from support import WAIT_S, AgentTestCase, WorkerThread


class GilReleased(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.q = self.queue()
        self.entered = threading.Event()
        self.gate = threading.Event()

        def gated(payload, ctx):
            self.entered.set()
            if not self.gate.wait(WAIT_S):
                raise RuntimeError("the gate was never opened")
            return {"through": payload["n"]}

        self.q.register_processor("gil.gated", gated)
        self.worker = WorkerThread(self.q).start()
        self.addCleanup(self.worker.join)
        self.addCleanup(self.gate.set)

    def test_result_releases_the_gil_while_it_waits(self):
        s = self.q.submit("gil.gated", {"n": 1})
        out = {}

        def wait():
            out["outcome"] = self.q.result(s, timeout=WAIT_S)

        waiter = threading.Thread(target=wait)
        waiter.start()
        # The worker thread needs the GIL to start the processor while the
        # waiter sits in result(); this thread needs it to get here.
        self.assertTrue(self.entered.wait(WAIT_S), "the processor never ran")
        self.gate.set()
        waiter.join(WAIT_S)
        self.assertFalse(waiter.is_alive(), "result() never returned")
        self.assertEqual(out["outcome"].status, "completed")
        self.assertEqual(out["outcome"].result, {"through": 1})

    def test_result_async_never_blocks_the_event_loop(self):
        async def main():
            s = self.q.submit("gil.gated", {"n": 2})
            task = asyncio.ensure_future(self.q.result_async(s, timeout=WAIT_S))
            # The loop keeps running while the task awaits: it waits for the
            # processor to start (in an executor thread) and opens the gate.
            started = await asyncio.get_running_loop().run_in_executor(
                None, self.entered.wait, WAIT_S)
            self.assertTrue(started, "the processor never ran")
            self.assertFalse(task.done())
            self.gate.set()
            return await task

        o = asyncio.run(asyncio.wait_for(main(), WAIT_S))
        self.assertEqual((o.status, o.result), ("completed", {"through": 2}))

    def test_many_concurrent_result_async_awaits(self):
        self.gate.set()

        async def main():
            subs = [self.q.submit("gil.gated", {"n": n}) for n in range(50)]
            outs = await asyncio.gather(*(self.q.result_async(s, timeout=WAIT_S) for s in subs))
            return [o.result["through"] for o in outs]

        self.assertEqual(asyncio.run(asyncio.wait_for(main(), WAIT_S)), list(range(50)))

    def test_result_async_times_out_with_timeout_error(self):
        async def main():
            s = self.q.submit("gil.nobody", {})
            with self.assertRaises(TimeoutError):
                await self.q.result_async(s, timeout=0.05)
            with self.assertRaises(TimeoutError):
                self.q.result(s, timeout=0)

        asyncio.run(asyncio.wait_for(main(), WAIT_S))


class ForgetEndsAwaits(AgentTestCase):
    def test_forget_ends_a_result_async_await_with_not_found(self):
        import perfq
        q = self.queue()

        async def main():
            s = q.submit("gil.nobody", {})
            task = asyncio.ensure_future(q.result_async(s))
            await asyncio.sleep(0)  # the task now awaits the outcome
            self.assertTrue(q.forget(s))
            with self.assertRaises(perfq.NotFoundError):
                await task

        asyncio.run(asyncio.wait_for(main(), WAIT_S))


if __name__ == "__main__":
    unittest.main()
