'use strict';
// The NestJS module: Test.createTestingModule({ imports:
// [PerformanceQueueModule.forRoot({ queue })] }).compile() gives an injectable
// PerformanceQueueService; a processor it registers serves what it submits;
// module.close() closes the queue, and the process then exits by itself.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const h = require('../../testlib/helpers');
const { Test } = require('@nestjs/testing');
const { PerformanceQueueModule, PerformanceQueueService, PermanentError } = require('..');

test('PerformanceQueueService round trip inside a testing module', async (t) => {
  const agent = await h.startAgent('nest', ['--max-retry-attempts', '1']);
  t.after(() => agent.stop());
  const moduleRef = await Test.createTestingModule({
    imports: [PerformanceQueueModule.forRoot({ queue: agent.queue, userId: 'nest-user' })],
  }).compile();
  const svc = moduleRef.get(PerformanceQueueService);
  assert.ok(svc instanceof PerformanceQueueService);

  svc.registerProcessor('nest.echo', async (payload, ctx) => ({ echo: payload.word, user: ctx.userId }));
  svc.registerProcessor('nest.reject', async () => { throw new PermanentError('no'); });
  const seen = [];
  svc.on('request.completed', (ev) => seen.push(ev.requestId));

  const s = await svc.submit({ type: 'nest.echo', payload: { word: 'hi' } });
  const o = await svc.result(s.requestId);
  assert.equal(o.status, 'completed');
  assert.deepEqual(o.result, { echo: 'hi', user: 'nest-user' });
  assert.equal((await svc.getStatus(s.requestId)).status, 'completed');
  assert.equal((await svc.status(s.requestId)).userId, 'nest-user');

  const f = await svc.submit({ type: 'nest.reject' });
  const fo = await svc.result(f.requestId);
  assert.equal(fo.status, 'failed');
  assert.equal(fo.error, 'PROCESSOR_ERROR');

  const pending = await svc.submit({ type: 'nest.nobody' });
  await svc.cancel(pending.requestId);
  assert.equal((await svc.result(pending.requestId)).status, 'cancelled');

  await moduleRef.close(); // onModuleDestroy closes the queue
  await assert.rejects(svc.submit({ type: 'nest.echo' }), { code: 'ERR_PERFQ_CLOSED' });
});

test('a Nest app process exits by itself after module.close()', async (t) => {
  const agent = await h.startAgent('nestexit');
  t.after(() => agent.stop());
  const { spawn } = require('node:child_process');
  const child = agent.own(spawn(process.execPath, [path.join(__dirname, '..', 'testlib', 'fixture_app.js'), agent.queue],
    { stdio: ['ignore', 'pipe', 'pipe'] }));
  const out = h.collect(child.stdout);
  const err = h.collect(child.stderr);
  const exit = await h.waitExit(child);
  assert.equal(exit.code, 0, err());
  const o = JSON.parse(out().trim());
  assert.equal(o.status, 'completed');
  assert.deepEqual(o.result, { doubled: 42 });
});
