'use strict';
// Submits one request and prints its outcome as one JSON line.
//   node await.js --queue Q [--type T] [--user U]
const { PerformanceQueue } = require('..');
const opts = require('./args')(process.argv.slice(2));

async function main() {
  const q = new PerformanceQueue({ queue: opts.queue, userId: opts.user || 'example' });
  try {
    const s = await q.submit({ type: opts.type || 'example.job', payload: { hello: 'world' } });
    console.log(JSON.stringify(await q.result(s.requestId)));
  } finally {
    await q.close();
  }
}

main().catch((e) => {
  console.error(`await: ${e.code || ''} ${e.message}`);
  process.exitCode = 1;
});
