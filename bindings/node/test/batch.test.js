'use strict';
// registerBatchProcessor: batch-mode requests of one type reach the batch
// processor together as [{ payload, ctx }]; its results come back in order,
// and an element that is an Error fails only that item.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('../testlib/helpers');

test('a batch processor gets the batch and answers per item', async (t) => {
  const agent = await h.startAgent('batch',
    ['--batch-size', '3', '--batch-interval-ms', '60000', '--max-retry-attempts', '1']);
  t.after(() => agent.stop());
  const q = new h.perfq.PerformanceQueue({ queue: agent.queue, userId: 'alice' });
  t.after(() => q.close());
  const batches = [];
  q.registerBatchProcessor('b.sum', async (items) => {
    batches.push(items.map((it) => it.payload.n));
    return items.map((it) => (it.payload.n < 0 ? new Error('negative') : { twice: it.payload.n * 2 }));
  });
  const ids = [];
  for (const n of [1, -1, 3]) {
    ids.push((await q.submit({ type: 'b.sum', mode: 'batch', payload: { n } })).requestId);
  }
  const [a, b, c] = await Promise.all(ids.map((id) => q.result(id)));
  assert.deepEqual(batches, [[1, -1, 3]], 'one dispatch of the three, in submit order');
  assert.equal(a.status, 'completed');
  assert.deepEqual(a.result, { twice: 2 });
  assert.equal(b.status, 'failed');
  assert.equal(b.error, 'PROCESSOR_ERROR');
  assert.equal(c.status, 'completed');
  assert.deepEqual(c.result, { twice: 6 });
});
