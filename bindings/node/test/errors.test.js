'use strict';
// Test point 2: every error code a client can meet surfaces as an Error
// with that .code (and .statusCode, .retryAfterMs where it applies); the
// outcome codes arrive in result().
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('../testlib/helpers');

const { PerformanceQueue } = h.perfq;

async function rejectsWith(promise, code, statusCode) {
  const err = await promise.then(() => null, (e) => e);
  assert.ok(err instanceof Error, `expected a rejection with ${code}`);
  assert.equal(err.code, code, err.message);
  if (statusCode !== undefined) assert.equal(err.statusCode, statusCode);
  return err;
}

test('submit validation errors', async (t) => {
  const agent = await h.startAgent('err');
  t.after(() => agent.stop());
  const q = new PerformanceQueue({ queue: agent.queue, userId: 'alice' });
  t.after(() => q.close());

  await t.test('INVALID_REQUEST: bad type', async () => {
    await rejectsWith(q.submit({ type: 'bad type!' }), 'INVALID_REQUEST', 400);
    await rejectsWith(q.submit({ type: '' }), 'INVALID_REQUEST', 400);
    await rejectsWith(q.submit({ type: 'x'.repeat(65) }), 'INVALID_REQUEST', 400);
    await rejectsWith(q.submit({}), 'INVALID_REQUEST', 400);
    await rejectsWith(q.submit(null), 'INVALID_REQUEST', 400);
  });
  await t.test('INVALID_REQUEST: bad userId', async () => {
    const bad = new PerformanceQueue({ queue: agent.queue, userId: 'not a user' });
    await rejectsWith(bad.submit({ type: 'e.t' }), 'INVALID_REQUEST', 400);
    await bad.close();
  });
  await t.test('INVALID_REQUEST: oversized payload (and its text is not in the message)', async () => {
    const e = await rejectsWith(q.submit({ type: 'e.t', payload: { big: 'Z'.repeat(5000) } }),
      'INVALID_REQUEST', 400);
    assert.ok(!e.message.includes('ZZZZ'));
    await rejectsWith(q.submit({ type: 'e.t', payload: 'not an object' }), 'INVALID_REQUEST');
    await rejectsWith(q.submit({ type: 'e.t', metadata: { m: 'M'.repeat(600) } }),
      'INVALID_REQUEST');
  });
  await t.test('INVALID_REQUEST: bad idempotency key (never quoted)', async () => {
    const e = await rejectsWith(q.submit({ type: 'e.t', idempotencyKey: 'sekrit\u0001' }),
      'INVALID_REQUEST', 400);
    assert.ok(!e.message.includes('sekrit'));
    await rejectsWith(q.submit({ type: 'e.t', idempotencyKey: 'k'.repeat(129) }), 'INVALID_REQUEST');
    await rejectsWith(q.submit({ type: 'e.t', idempotencyKey: '' }), 'INVALID_REQUEST');
  });
  await t.test('INVALID_MODE', async () => {
    await rejectsWith(q.submit({ type: 'e.t', mode: 'lifo' }), 'INVALID_MODE', 400);
  });
  await t.test('INVALID_PRIORITY: 0, 21 and 2.5', async () => {
    await rejectsWith(q.submit({ type: 'e.t', priority: 0 }), 'INVALID_PRIORITY', 400);
    await rejectsWith(q.submit({ type: 'e.t', priority: 21 }), 'INVALID_PRIORITY', 400);
    await rejectsWith(q.submit({ type: 'e.t', priority: 2.5 }), 'INVALID_PRIORITY', 400);
  });
  await t.test('NOT_FOUND: another user\'s request, an unknown id, result() of others', async () => {
    const s = await q.submit({ type: 'e.t' });
    const mallory = new PerformanceQueue({ queue: agent.queue, userId: 'mallory' });
    await rejectsWith(mallory.status(s.requestId), 'NOT_FOUND', 404);
    await rejectsWith(mallory.cancel(s.requestId), 'NOT_FOUND', 404);
    await rejectsWith(mallory.result(s.requestId), 'NOT_FOUND', 404);
    await mallory.close();
    // Per call, acting for another user; an admin sees every request.
    await rejectsWith(q.status(s.requestId, { userId: 'mallory' }), 'NOT_FOUND', 404);
    assert.equal((await q.status(s.requestId, { userId: 'ops', admin: true })).userId, 'alice');
    await rejectsWith(q.status('00000000deadbeef'), 'NOT_FOUND', 404);
    await rejectsWith(q.result('00000000deadbeef'), 'NOT_FOUND', 404);
    await rejectsWith(q.status('nope'), 'INVALID_REQUEST', 400);
  });
  await t.test('CANCELLED: the outcome of a cancelled request', async () => {
    const s = await q.submit({ type: 'e.nobody' });
    const pending = q.result(s.requestId);
    await q.cancel(s.requestId);
    const o = await pending;
    assert.equal(o.status, 'cancelled');
    assert.equal(o.error, 'CANCELLED');
    assert.equal(o.result, null);
    assert.equal((await q.status(s.requestId)).status, 'cancelled');
  });
  await t.test('INVALID_STATUS: cancelling a finished request', async () => {
    await h.startCppWorker(agent, ['e.done']);
    const s = await q.submit({ type: 'e.done' });
    assert.equal((await q.result(s.requestId)).status, 'completed');
    await rejectsWith(q.cancel(s.requestId), 'INVALID_STATUS', 400);
  });
  await t.test('PROCESSOR_ERROR: the outcome of a failing processor', async () => {
    await h.startCppWorker(agent, [], ['e.fail']);
    const s = await q.submit({ type: 'e.fail' });
    const o = await q.result(s.requestId);
    assert.equal(o.status, 'failed');
    assert.equal(o.error, 'PROCESSOR_ERROR');
    assert.equal(o.attempts, 1);
  });
});

test('RATE_LIMIT_EXCEEDED carries retryAfterMs', async (t) => {
  const agent = await h.startAgent('rate', ['--max-requests-per-user-per-minute', '2']);
  t.after(() => agent.stop());
  const q = new PerformanceQueue({ queue: agent.queue, userId: 'alice' });
  t.after(() => q.close());
  await q.submit({ type: 'r.t' });
  await q.submit({ type: 'r.t' });
  const e = await rejectsWith(q.submit({ type: 'r.t' }), 'RATE_LIMIT_EXCEEDED', 429);
  assert.equal(typeof e.retryAfterMs, 'number');
  // Within the 60 s window; the limiter rounds to whole milliseconds and was
  // seen answering 60001.
  assert.ok(e.retryAfterMs > 0 && e.retryAfterMs <= 61000, String(e.retryAfterMs));
});

test('QUEUE_FULL after the rope-drop wait (off the main thread)', async (t) => {
  const agent = await h.startAgent('full', ['--max-queue-depth', '1', '--rope-drop-timeout-ms', '100']);
  t.after(() => agent.stop());
  const q = new PerformanceQueue({ queue: agent.queue, userId: 'alice' });
  t.after(() => q.close());
  await q.submit({ type: 'f.t' });
  await rejectsWith(q.submit({ type: 'f.t' }), 'QUEUE_FULL', 503);
});

test('PROCESSING_TIMEOUT: an attempt that outlives processing_timeout_ms', async (t) => {
  const agent = await h.startAgent('ptime',
    ['--processing-timeout-ms', '300', '--max-retry-attempts', '1']);
  t.after(() => agent.stop());
  const q = new PerformanceQueue({ queue: agent.queue, userId: 'alice' });
  let release;
  const held = new Promise((r) => { release = r; });
  q.registerProcessor('p.slow', () => held);
  t.after(async () => {
    release('late');
    await q.close();
  });
  const s = await q.submit({ type: 'p.slow' });
  const o = await q.result(s.requestId);
  assert.equal(o.status, 'failed');
  assert.equal(o.error, 'PROCESSING_TIMEOUT');
});

test('a queue with no segment: AGENT_UNAVAILABLE', async () => {
  const q = new PerformanceQueue({ queue: h.uniqueQueue('none'), userId: 'alice' });
  await rejectsWith(q.submit({ type: 'n.t' }), 'AGENT_UNAVAILABLE', 503);
  await rejectsWith(q.connect(), 'AGENT_UNAVAILABLE', 503);
  assert.throws(() => q.registerProcessor('n.t', async () => 1), { code: 'AGENT_UNAVAILABLE' });
  await q.close();
});

test('misuse after close() rejects with ERR_PERFQ_CLOSED', async (t) => {
  const agent = await h.startAgent('closed');
  t.after(() => agent.stop());
  const q = new PerformanceQueue({ queue: agent.queue, userId: 'alice' });
  const s = await q.submit({ type: 'c.t' });
  await q.close();
  await rejectsWith(q.submit({ type: 'c.t' }), 'ERR_PERFQ_CLOSED');
  await rejectsWith(q.result(s.requestId), 'ERR_PERFQ_CLOSED');
  await rejectsWith(q.status(s.requestId), 'ERR_PERFQ_CLOSED');
  await rejectsWith(q.cancel(s.requestId), 'ERR_PERFQ_CLOSED');
  assert.throws(() => q.on('*', () => {}), { code: 'ERR_PERFQ_CLOSED' });
  assert.throws(() => q.registerProcessor('c.t', async () => 1), { code: 'ERR_PERFQ_CLOSED' });
  await q.close(); // twice is fine
});
