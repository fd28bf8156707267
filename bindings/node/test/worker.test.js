'use strict';
// One worker per PerformanceQueue (issue 14): concurrency is processor calls
// in flight, not segment clients; fire and forget never crosses back into
// JavaScript; a worker killed with attempts in hand loses only the started
// ones (WORKER_DIED, retried), the unstarted ones go back uncounted.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('../testlib/helpers');

function health(queue) {
  return JSON.parse(h.perfqctl(queue, ['--json', 'health']));
}

// A gate the processors wait on, and the number of them running.
function gate() {
  let open;
  const opened = new Promise((r) => { open = r; });
  return { opened, open: () => open() };
}

test('concurrency N runs N processors at once in one worker', async (t) => {
  const agent = await h.startAgent('conc', ['--max-concurrent-workers', '64']);
  t.after(() => agent.stop());
  const q = new h.perfq.PerformanceQueue({ queue: agent.queue, userId: 'u' });
  t.after(() => q.close());
  const g = gate();
  let running = 0;
  let most = 0;
  q.registerProcessor('conc.t', async (payload) => {
    running++;
    most = Math.max(most, running);
    await g.opened;
    running--;
    return { i: payload.i };
  }, { concurrency: 8 });
  const ids = [];
  for (let i = 0; i < 30; i++) ids.push((await q.submit({ type: 'conc.t', payload: { i } })).requestId);
  await h.until(() => running === 8, 'eight processors running');
  // Nothing more starts while eight run (the rest waits in the ring or the queue).
  for (let k = 0; k < 50; k++) await new Promise((r) => setImmediate(r));
  assert.equal(running, 8);
  const hl = health(agent.queue);
  assert.equal(hl.workers.length, 1, 'one worker record, whatever the concurrency');
  g.open();
  for (let i = 0; i < ids.length; i++) {
    const o = await q.result(ids[i]);
    assert.equal(o.status, 'completed');
    assert.deepEqual(o.result, { i });
    assert.equal(o.attempts, 1);
  }
  assert.equal(most, 8);
});

test('a worker of concurrency 1000 costs one client record', async (t) => {
  // Four records in all: the worker, the producer, and perfqctl's reads
  // would not fit one record per unit of concurrency.
  const agent = await h.startAgent('conc1k', ['--max-clients', '4']);
  t.after(() => agent.stop());
  const w = new h.perfq.PerformanceQueue({ queue: agent.queue });
  t.after(() => w.close());
  w.registerProcessor('conc1k.t', async (p) => p.n * 2, { concurrency: 1000 });
  w.registerBatchProcessor('conc1k.b', async (items) => items.map((it) => it.payload.n),
    { concurrency: 1000 });
  const q = new h.perfq.PerformanceQueue({ queue: agent.queue, userId: 'u' });
  t.after(() => q.close());
  await q.connect();
  const s = await q.submit({ type: 'conc1k.t', payload: { n: 21 } });
  assert.equal((await q.result(s.requestId)).result, 42);
  assert.equal(health(agent.queue).workers.length, 1);
});

test('concurrency is checked: 1..100000', async (t) => {
  const agent = await h.startAgent('concbad');
  t.after(() => agent.stop());
  const q = new h.perfq.PerformanceQueue({ queue: agent.queue });
  t.after(() => q.close());
  for (const c of [0, 100001, 1.5, -1]) {
    assert.throws(() => q.registerProcessor('concbad.t', async () => 1, { concurrency: c }),
      { code: 'ERR_INVALID_ARG_VALUE' });
  }
});

test('fire and forget: the outcome never crosses into JavaScript', async (t) => {
  // A small queue: 100 outcomes nobody drained would hold its slots, and
  // the submits below would end in QUEUE_FULL.
  const agent = await h.startAgent('forget', ['--max-queue-depth', '16']);
  t.after(() => agent.stop());
  const w = new h.perfq.PerformanceQueue({ queue: agent.queue });
  t.after(() => w.close());
  let processed = 0;
  w.registerProcessor('forget.t', async () => { processed++; return 'done'; }, { concurrency: 4 });
  const q = new h.perfq.PerformanceQueue({ queue: agent.queue, userId: 'u' });
  t.after(() => q.close());
  let settledCalls = 0;
  const onSettled = q._onSettled.bind(q);
  q._onSettled = (outs) => { settledCalls++; onSettled(outs); };
  const ids = [];
  for (let i = 0; i < 100; i++) {
    ids.push((await q.submit({ type: 'forget.t', payload: { i } }, { forget: true })).requestId);
  }
  await h.until(() => processed === 100, 'every forgotten request processed');
  await assert.rejects(q.result(ids[0]), { code: 'NOT_FOUND' });
  // A tracked submit after them still gets its outcome, and it is the only one.
  const last = await q.submit({ type: 'forget.t', payload: {} });
  assert.equal((await q.result(last.requestId)).result, 'done');
  assert.equal(settledCalls, 1);
});

test('a worker killed with attempts in hand: started ones retry, unstarted ones go back uncounted',
  async (t) => {
    const agent = await h.startAgent('crashw', ['--max-concurrent-workers', '64',
      '--max-retry-attempts', '3', '--retry-backoff-ms', '0']);
    t.after(() => agent.stop());
    // The child runs 4 at once and holds up to 8: processors that never end.
    const child = agent.own(require('node:child_process').spawn(process.execPath, ['-e', `
      const { PerformanceQueue } = require(${JSON.stringify(h.NODE_DIR)});
      const q = new PerformanceQueue({ queue: ${JSON.stringify(agent.queue)} });
      q.registerProcessor('crashw.t', (p, ctx) => {
        console.log('started ' + ctx.requestId);
        return new Promise(() => {});
      }, { concurrency: 4 });
      console.log('ready');
    `], { stdio: ['ignore', 'pipe', 'inherit'] }));
    await h.waitLine(child.stdout, (l) => l === 'ready', 'the child worker ready');
    const started = new Set();
    child.stdout.setEncoding('utf8');
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const lines = buf.split('\n');
      buf = lines.pop();
      for (const l of lines) if (l.startsWith('started ')) started.add(l.slice(8));
    });
    child.stdout.resume(); // waitLine's readline paused it
    const q = new h.perfq.PerformanceQueue({ queue: agent.queue, userId: 'u' });
    t.after(() => q.close());
    const ids = [];
    for (let i = 0; i < 12; i++) ids.push((await q.submit({ type: 'crashw.t', payload: { i } })).requestId);
    await h.until(() => started.size === 4, 'four attempts started');
    // Four more dispatched to it, not started: it holds twice its concurrency.
    await h.until(() => health(agent.queue).processingCount === 8, 'eight dispatched to it');
    assert.equal(started.size, 4);
    child.kill('SIGKILL');
    await h.waitExit(child).catch(() => {});
    // A worker that completes everything takes over.
    const w = new h.perfq.PerformanceQueue({ queue: agent.queue });
    t.after(() => w.close());
    w.registerProcessor('crashw.t', async (p) => p.i, { concurrency: 4 });
    for (let i = 0; i < ids.length; i++) {
      const o = await q.result(ids[i]);
      assert.equal(o.status, 'completed');
      assert.equal(o.result, i);
      assert.equal(o.attempts, started.has(ids[i]) ? 2 : 1,
        `${started.has(ids[i]) ? 'started' : 'unstarted'} request ${i}`);
    }
  });

test('raw bytes both ways: a Buffer payload, a raw processor, raw results', async (t) => {
  const agent = await h.startAgent('raw');
  t.after(() => agent.stop());
  const w = new h.perfq.PerformanceQueue({ queue: agent.queue });
  t.after(() => w.close());
  const seen = [];
  w.registerProcessor('raw.t', (payload) => {
    seen.push(payload);
    return Buffer.from(payload).reverse();
  }, { raw: true });
  const q = new h.perfq.PerformanceQueue({ queue: agent.queue, userId: 'u', rawResults: true });
  t.after(() => q.close());
  // Not JSON, not even UTF-8: a NUL, a lone continuation byte, 0xff.
  const bytes = Buffer.from([0x00, 0x01, 0x80, 0xff, 0x7b]);
  const s = await q.submit({ type: 'raw.t', payload: bytes });
  const o = await q.result(s.requestId);
  assert.equal(o.status, 'completed');
  assert.ok(Buffer.isBuffer(o.result));
  assert.deepEqual([...o.result], [0x7b, 0xff, 0x80, 0x01, 0x00]);
  assert.ok(Buffer.isBuffer(seen[0]));
  assert.deepEqual([...seen[0]], [...bytes]);
  // submitMany carries bytes too, and a JSON payload still reaches a raw
  // processor as its JSON text's bytes.
  const [a, b] = await q.submitMany([
    { type: 'raw.t', payload: new Uint8Array([1, 2, 3]) },
    { type: 'raw.t', payload: { k: 1 } },
  ]);
  assert.deepEqual([...(await q.result(a.value.requestId)).result], [3, 2, 1]);
  assert.equal(Buffer.from((await q.result(b.value.requestId)).result).reverse().toString(),
    '{"k":1}');
});
