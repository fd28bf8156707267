'use strict';
// Serves the types named on the command line until SIGTERM or SIGINT, then
// closes cleanly. Each reply is {"processed":true,"type":T,"by":"node"};
// types given with --fail throw a PermanentError (straight to the DLQ),
// types given with --throw throw an ordinary Error (retried).
//   node worker.js --queue Q [--fail T]... [--throw T]... [--concurrency N] TYPE...
// Prints "ready" once every type is registered.
const { PerformanceQueue, PermanentError } = require('..');
const opts = require('./args')(process.argv.slice(2));

const list = (v) => (v === undefined ? [] : [].concat(v));
const q = new PerformanceQueue({ queue: opts.queue });
const concurrency = Number(opts.concurrency || 1);

try {
  for (const type of opts._) {
    q.registerProcessor(type, async (payload, ctx) =>
      ({ processed: true, type: ctx.type, by: 'node', attempt: ctx.attempt }), { concurrency });
  }
  for (const type of list(opts.fail)) {
    q.registerProcessor(type, async () => { throw new PermanentError('rejected by example'); });
  }
  for (const type of list(opts.throw)) {
    q.registerProcessor(type, async () => { throw new Error('failed by example'); });
  }
} catch (e) {
  console.error(`worker: ${e.code || ''} ${e.message}`);
  process.exit(1);
}
console.log('ready');

function stop() {
  q.close().then(() => console.log('closed'));
}
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
