'use strict';
// A Nest app in a process of its own: compiles a testing module with
// PerformanceQueueModule.forRoot, registers a processor, submits, awaits the
// result, closes the module, and must then exit by itself.
const { Test } = require('@nestjs/testing');
const { PerformanceQueueModule, PerformanceQueueService } = require('..');

(async () => {
  const moduleRef = await Test.createTestingModule({
    imports: [PerformanceQueueModule.forRoot({ queue: process.argv[2], userId: 'nest-user' })],
  }).compile();
  const svc = moduleRef.get(PerformanceQueueService);
  svc.registerProcessor('nest.fixture', async (payload) => ({ doubled: payload.n * 2 }));
  const s = await svc.submit({ type: 'nest.fixture', payload: { n: 21 } });
  const pending = svc.result(s.requestId);
  const o = await pending;
  await moduleRef.close();
  console.log(JSON.stringify(o));
})().catch((e) => {
  console.error(`nest fixture: ${e.code || ''} ${e.message}`);
  process.exitCode = 1;
});
