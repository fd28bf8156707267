'use strict';
// Submits N requests of one type and exits (without awaiting outcomes: the
// PerformanceQueue does not keep the process alive once nothing is awaited).
//   node producer.js --queue Q [--type T] [--count N] [--user U]
// Prints one JSON line per submit response.
const { PerformanceQueue } = require('..');
const opts = require('./args')(process.argv.slice(2));

async function main() {
  const q = new PerformanceQueue({ queue: opts.queue, userId: opts.user || 'example' });
  const count = Number(opts.count || 1);
  for (let i = 0; i < count; i++) {
    const r = await q.submit({ type: opts.type || 'example.job', payload: { n: i } });
    console.log(JSON.stringify(r));
  }
  await q.close();
}

main().catch((e) => {
  console.error(`producer: ${e.code || ''} ${e.message}`);
  process.exitCode = 1;
});
