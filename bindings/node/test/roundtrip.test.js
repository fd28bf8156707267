'use strict';
// Test point 1: submit -> a processor in ANOTHER process -> result.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('../testlib/helpers');

test('round trips through another process', async (t) => {
  const agent = await h.startAgent('rt');
  t.after(() => agent.stop());

  await t.test('a Node producer gets the outcome of the C++ example worker', async () => {
    await h.startCppWorker(agent, ['rt.cpp']);
    const q = new h.perfq.PerformanceQueue({ queue: agent.queue, userId: 'alice' });
    try {
      const s = await q.submit({ type: 'rt.cpp', mode: 'priority', priority: 10,
        payload: { message: 'hello' }, metadata: { trace: 'x1' } });
      assert.match(s.requestId, /^[0-9a-f]{16}$/);
      assert.equal(s.mode, 'priority');
      assert.equal(s.type, 'rt.cpp');
      assert.equal(s.priority, 10);
      assert.equal(typeof s.queuePosition, 'number');
      assert.ok(!Number.isNaN(Date.parse(s.createdAt)));
      const o = await q.result(s.requestId);
      assert.equal(o.requestId, s.requestId);
      assert.equal(o.status, 'completed');
      assert.deepEqual(o.result, { processed: true, type: 'rt.cpp',
        bytes: JSON.stringify({ message: 'hello' }).length });
      assert.equal(o.attempts, 1);
      assert.equal(o.error, undefined);
      assert.equal(typeof o.waitTimeMs, 'number');
      assert.equal(typeof o.processingTimeMs, 'number');
      // result() again answers from the outcome cache.
      assert.deepEqual(await q.result(s.requestId), o);
      const st = await q.status(s.requestId);
      assert.equal(st.status, 'completed');
      assert.equal(st.userId, 'alice');
      assert.equal(st.band, 'HIGH');
      // An equal idempotency key returns the same request.
      const k1 = await q.submit({ type: 'rt.cpp', payload: {}, idempotencyKey: 'key-1' });
      const k2 = await q.submit({ type: 'rt.cpp', payload: {}, idempotencyKey: 'key-1' });
      assert.equal(k2.requestId, k1.requestId);
      assert.equal(k2.duplicate, true);
      assert.equal((await q.result(k1.requestId)).status, 'completed');
    } finally {
      await q.close();
    }
  });

  await t.test('a Node producer gets the outcome of examples/worker.js', async () => {
    const w = h.startNode(agent, 'examples/worker.js', ['--queue', agent.queue, 'rt.node']);
    await h.waitLine(w.stdout, (l) => l === 'ready', 'worker.js ready');
    const q = new h.perfq.PerformanceQueue({ queue: agent.queue, userId: 'bob' });
    try {
      const ids = [];
      for (let i = 0; i < 20; i++) {
        ids.push((await q.submit({ type: 'rt.node', payload: { i } })).requestId);
      }
      for (const id of ids) {
        const o = await q.result(id);
        assert.equal(o.status, 'completed');
        assert.deepEqual(o.result, { processed: true, type: 'rt.node', by: 'node', attempt: 1 });
      }
    } finally {
      await q.close();
    }
    w.kill('SIGTERM');
    const exit = await h.waitExit(w);
    assert.equal(exit.code, 0, 'worker.js closes cleanly on SIGTERM');
  });

  await t.test('the examples run: worker.js serves what producer.js and await.js submit', async () => {
    const w = h.startNode(agent, 'examples/worker.js', ['--queue', agent.queue, 'rt.ex']);
    await h.waitLine(w.stdout, (l) => l === 'ready', 'worker.js ready');

    const p = h.startNode(agent, 'examples/producer.js',
      ['--queue', agent.queue, '--type', 'rt.ex', '--count', '5']);
    const pout = h.collect(p.stdout);
    assert.equal((await h.waitExit(p)).code, 0, 'producer.js exits by itself');
    const lines = pout().trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.length, 5);
    for (const l of lines) assert.match(l.requestId, /^[0-9a-f]{16}$/);

    const aw = h.startNode(agent, 'examples/await.js', ['--queue', agent.queue, '--type', 'rt.ex']);
    const aout = h.collect(aw.stdout);
    assert.equal((await h.waitExit(aw)).code, 0, 'await.js exits by itself');
    const o = JSON.parse(aout().trim());
    assert.equal(o.status, 'completed');
    assert.equal(o.result.by, 'node');

    w.kill('SIGTERM');
    assert.equal((await h.waitExit(w)).code, 0);
  });
});
