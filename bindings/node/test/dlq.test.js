'use strict';
// Test point 3: a throwing processor is retried max_retry_attempts times,
// then `failed` and in the DLQ; a PermanentError goes there after one attempt.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('../testlib/helpers');

const { PerformanceQueue, PermanentError } = h.perfq;

function dlqEntry(queue, requestId) {
  const out = JSON.parse(h.perfqctl(queue, ['--json', 'dlq', 'list', '--all']));
  return out.entries.find((e) => e.originalRequestId === requestId);
}

test('failing processors end in the DLQ', async (t) => {
  const agent = await h.startAgent('dlq',
    ['--max-retry-attempts', '3', '--retry-backoff-ms', '10']);
  t.after(() => agent.stop());
  const q = new PerformanceQueue({ queue: agent.queue, userId: 'alice' });
  t.after(() => q.close());
  const attempts = { 'd.throw': [], 'd.permanent': [] };
  q.registerProcessor('d.throw', async (payload, ctx) => {
    attempts['d.throw'].push(ctx.attempt);
    throw new Error('transient trouble');
  });
  q.registerProcessor('d.permanent', async (payload, ctx) => {
    attempts['d.permanent'].push(ctx.attempt);
    throw new PermanentError('never going to work');
  });

  await t.test('an ordinary error is retried, then failed and dead-lettered', async () => {
    const s = await q.submit({ type: 'd.throw', payload: { secret: 'p4yl0ad' } });
    const o = await q.result(s.requestId);
    assert.equal(o.status, 'failed');
    assert.equal(o.error, 'PROCESSOR_ERROR');
    assert.equal(o.attempts, 3);
    assert.deepEqual(attempts['d.throw'], [1, 2, 3]);
    assert.ok(!JSON.stringify(o).includes('p4yl0ad'));
    const e = dlqEntry(agent.queue, s.requestId);
    assert.ok(e, 'the request is in the DLQ');
    assert.equal(e.attemptCount, 3);
    assert.equal(e.failureReason, 'PROCESSOR_ERROR');
    assert.equal((await q.status(s.requestId)).status, 'failed');
  });

  await t.test('a PermanentError goes to the DLQ after one attempt', async () => {
    const s = await q.submit({ type: 'd.permanent' });
    const o = await q.result(s.requestId);
    assert.equal(o.status, 'failed');
    assert.equal(o.attempts, 1);
    assert.deepEqual(attempts['d.permanent'], [1]);
    const e = dlqEntry(agent.queue, s.requestId);
    assert.ok(e, 'the request is in the DLQ');
    assert.equal(e.attemptCount, 1);
  });
});
