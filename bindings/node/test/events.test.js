'use strict';
// Test point 7: on() delivers the events of one request in order
// (submitted ... completed) with the documented fields, never a payload.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('../testlib/helpers');

// The agent writes events only while a reader polls; it notices the first
// poll within its liveness interval. Submits probes until one's event
// arrives (each wait bounded), so the feed is known to be flowing.
async function feedFlowing(q) {
  for (let i = 0; i < 50; i++) {
    const p = await q.submit({ type: 'ev.probe' });
    try {
      await h.nextEvent(q, 'request.submitted', (e) => e.requestId === p.requestId, 200);
      return;
    } catch {
      // not flowing yet: the next probe
    }
  }
  throw new Error('the event feed never started');
}

test('events of one request arrive in order, with their fields, without payloads', async (t) => {
  const agent = await h.startAgent('events');
  t.after(() => agent.stop());
  await h.startCppWorker(agent, ['ev.t', 'ev.probe']);
  const q = new h.perfq.PerformanceQueue({ queue: agent.queue, userId: 'alice' });
  t.after(() => q.close());

  const all = [];
  const onAll = (ev) => all.push(ev);
  q.on('*', onAll);
  await feedFlowing(q);

  const s = await q.submit({ type: 'ev.t', mode: 'priority', priority: 12,
    payload: { secret: 'pay-l0ad-text' }, metadata: { m: 1 } });
  const completed = await h.nextEvent(q, 'request.completed', (e) => e.requestId === s.requestId);
  assert.equal((await q.result(s.requestId)).status, 'completed');

  const mine = all.filter((e) => e.requestId === s.requestId);
  assert.deepEqual(mine.map((e) => e.event),
    ['request.submitted', 'request.assigned', 'request.processing', 'request.completed']);
  for (let i = 1; i < mine.length; i++) assert.ok(mine[i].id > mine[i - 1].id, 'ids increase');
  assert.deepEqual(Object.keys(completed).sort(),
    ['at', 'attempt', 'event', 'id', 'mode', 'priority', 'requestId', 'status', 'type', 'userId']);
  assert.equal(completed.type, 'ev.t');
  assert.equal(completed.userId, 'alice');
  assert.equal(completed.status, 'completed');
  assert.equal(completed.mode, 'priority');
  assert.equal(completed.priority, 12);
  assert.equal(completed.attempt, 1);
  assert.equal(typeof completed.id, 'number');
  assert.ok(!Number.isNaN(Date.parse(completed.at)));
  for (const e of all) {
    assert.equal(e.payload, undefined);
    assert.ok(!JSON.stringify(e).includes('pay-l0ad-text'), 'no payload in events');
  }

  // off(): this listener hears nothing more.
  q.off('*', onAll);
  const before = all.length;
  const s2 = await q.submit({ type: 'ev.t' });
  await h.nextEvent(q, 'request.completed', (e) => e.requestId === s2.requestId);
  assert.equal(all.length, before);
});

test('on() refuses unknown event names', async () => {
  const q = new h.perfq.PerformanceQueue({ queue: h.uniqueQueue('names') });
  assert.throws(() => q.on('request.exploded', () => {}), { code: 'ERR_INVALID_ARG_VALUE' });
  await q.close();
});
