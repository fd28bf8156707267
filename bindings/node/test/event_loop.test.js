'use strict';
// Test point 6: the event loop is never blocked. The processor runs in this
// process and holds its request on a promise that only this test's own
// main-thread code settles; a submit waits for room meanwhile. Were any
// call to block the main thread, nothing could open the promise: the test
// would deadlock (bounded by its timeout). No timing assertions.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('../testlib/helpers');

test('waiting submits and results leave the main thread free', { timeout: 60000 }, async (t) => {
  const agent = await h.startAgent('loop', ['--max-queue-depth', '1', '--rope-drop-timeout-ms', '30000']);
  t.after(() => agent.stop());
  const q = new h.perfq.PerformanceQueue({ queue: agent.queue, userId: 'alice' });
  t.after(() => q.close());

  // A fills the queue (depth 1); B must wait for room, off the main thread.
  const a = await q.submit({ type: 'loop.hold', payload: { n: 'a' } });
  const bSubmitted = q.submit({ type: 'loop.hold', payload: { n: 'b' } });
  const aResult = q.result(a.requestId);

  let started;
  const aStarted = new Promise((r) => { started = r; });
  const gates = [];
  q.registerProcessor('loop.hold', (payload, ctx) => new Promise((resolve) => {
    gates.push(resolve);
    started(ctx.requestId);
  }));

  assert.equal(await aStarted, a.requestId);
  gates.shift()('opened by the main thread'); // the test's own main-thread code opens it
  const o = await aResult;
  assert.equal(o.status, 'completed');
  assert.equal(o.result, 'opened by the main thread');

  const b = await bSubmitted; // room appeared: the waiting submit went through
  const bResult = q.result(b.requestId);
  await h.until(() => gates.length > 0, 'the processor to start B');
  gates.shift()('b too');
  assert.equal((await bResult).result, 'b too');
});
