'use strict';
// Test point 5: closing with requests in flight is clean: the awaits reject
// with ERR_PERFQ_CLOSED and the process exits by itself.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('../testlib/helpers');

test('close() with results in flight rejects them and lets the process exit', async (t) => {
  const agent = await h.startAgent('close');
  t.after(() => agent.stop());
  const child = h.startNode(agent, 'testlib/fixtures/close_inflight.js', [agent.queue]);
  const out = h.collect(child.stdout);
  const err = h.collect(child.stderr);
  const exit = await h.waitExit(child); // bounded: a process kept alive fails here
  assert.equal(exit.code, 0, err());
  assert.deepEqual(JSON.parse(out().trim()), Array(5).fill('ERR_PERFQ_CLOSED'));
});

test('an idle PerformanceQueue never keeps the process alive', async (t) => {
  const agent = await h.startAgent('idle');
  t.after(() => agent.stop());
  // Submits without awaiting and never closes: the process still exits.
  const child = agent.own(require('node:child_process').spawn(process.execPath, ['-e', `
    const { PerformanceQueue } = require(${JSON.stringify(h.NODE_DIR)});
    const q = new PerformanceQueue({ queue: ${JSON.stringify(agent.queue)}, userId: 'u' });
    q.submit({ type: 'idle.t' }).then((s) => console.log(s.requestId));
  `], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const out = h.collect(child.stdout);
  const exit = await h.waitExit(child);
  assert.equal(exit.code, 0);
  assert.match(out().trim(), /^[0-9a-f]{16}$/);
});

test('a registerProcessor that failed does not keep the process alive', async () => {
  const { spawn } = require('node:child_process');
  const child = spawn(process.execPath, ['-e', `
    const { PerformanceQueue } = require(${JSON.stringify(h.NODE_DIR)});
    const q = new PerformanceQueue({ queue: ${JSON.stringify(h.uniqueQueue('noseg'))} });
    try { q.registerProcessor('noseg.t', async () => 1); } catch (e) { console.log(e.code); }
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  const out = h.collect(child.stdout);
  const exit = await h.waitExit(child).catch((e) => {
    child.kill('SIGKILL');
    throw e;
  });
  assert.equal(exit.code, 0);
  assert.equal(out().trim(), 'AGENT_UNAVAILABLE');
});

test('close() ends a submit waiting for room at once, and the process exits', async (t) => {
  // rope_drop_timeout_ms is 10 minutes: a wait that ignored close() would
  // keep the child past waitExit's bound.
  const agent = await h.startAgent('closewait',
    ['--max-queue-depth', '1', '--rope-drop-timeout-ms', '600000']);
  t.after(() => agent.stop());
  const child = agent.own(require('node:child_process').spawn(process.execPath, ['-e', `
    const { PerformanceQueue } = require(${JSON.stringify(h.NODE_DIR)});
    const q = new PerformanceQueue({ queue: ${JSON.stringify(agent.queue)}, userId: 'u' });
    (async () => {
      await q.submit({ type: 'closewait.t' });           // fills the queue
      const waiting = q.submit({ type: 'closewait.t' }); // waits for room off the main thread
      setImmediate(() => q.close());
      await waiting.then(() => console.log('accepted'), (e) => console.log(e.code));
    })();
  `], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const out = h.collect(child.stdout);
  const exit = await h.waitExit(child);
  assert.equal(exit.code, 0);
  assert.equal(out().trim(), 'ERR_PERFQ_CLOSED');
});

test('close() leaves requests its workers had not started to the agent, at no attempt', async (t) => {
  const agent = await h.startAgent('closeburn', ['--max-retry-attempts', '3']);
  t.after(() => agent.stop());
  // One worker whose processor never settles: it holds the first request
  // until close() abandons the call (closeTimeoutMs 100).
  const child = agent.own(require('node:child_process').spawn(process.execPath, ['-e', `
    const { PerformanceQueue } = require(${JSON.stringify(h.NODE_DIR)});
    const q = new PerformanceQueue({ queue: ${JSON.stringify(agent.queue)}, closeTimeoutMs: 100 });
    q.registerProcessor('closeburn.t', () => {
      console.log('started');
      return new Promise(() => {});
    });
    console.log('ready');
    process.once('SIGTERM', () => q.close().then(() => console.log('closed')));
  `], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const out = h.collect(child.stdout);
  await h.until(() => out().includes('ready'), 'the worker');
  const q = new h.perfq.PerformanceQueue({ queue: agent.queue, userId: 'u' });
  t.after(() => q.close());
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push((await q.submit({ type: 'closeburn.t' })).requestId);
  await h.until(() => out().includes('started'), 'the first attempt');
  child.kill('SIGTERM');
  assert.equal((await h.waitExit(child)).code, 0);
  assert.match(out(), /closed/);
  const st = await Promise.all(ids.map((id) => q.status(id)));
  // The held one was abandoned (one attempt, to be retried); the other two
  // were never started by this worker, so they cost nothing.
  assert.deepEqual(st.map((s) => s.attempts).sort(), [0, 0, 1]);
  for (const s of st) assert.equal(s.status, 'pending');
});

test('on() with no agent throws AGENT_UNAVAILABLE and keeps nothing alive; off() after close() is quiet', async () => {
  const { spawn } = require('node:child_process');
  const child = spawn(process.execPath, ['-e', `
    const { PerformanceQueue } = require(${JSON.stringify(h.NODE_DIR)});
    const q = new PerformanceQueue({ queue: ${JSON.stringify(h.uniqueQueue('noevents'))} });
    const f = () => {};
    try { q.on('request.completed', f); } catch (e) { console.log(e.code); }
    q.close().then(() => { q.off('request.completed', f); q.removeAllListeners(); console.log('off'); });
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  const out = h.collect(child.stdout);
  const exit = await h.waitExit(child).catch((e) => {
    child.kill('SIGKILL');
    throw e;
  });
  assert.equal(exit.code, 0);
  assert.deepEqual(out().trim().split('\n'), ['AGENT_UNAVAILABLE', 'off']);
});
