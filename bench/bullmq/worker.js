'use strict';
// One worker process of bench/bullmq (driver.js starts it with an IPC
// channel): a no-op processor (returns null) that counts the jobs it did.
//
//   node worker.js --system perfq|bullmq --queue Q [--port P] --type T
//                  [--concurrency C] [--batch]
//
// Messages from the driver:
//   { until: N }  answer { reached: count, atNs, cpuUs } once N jobs are done
//                 (at once if they are), counting since the last reset
//   { reset: true }  count from zero again, and CPU from now
// It says { ready: true } once its processor is registered, and closes on
// SIGTERM/SIGINT or when the driver goes away.
const { connectionOf } = require('./sides');

const args = process.argv.slice(2);
function opt(name, dflt) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
}

let done = 0;
let target = Infinity;
let cpu0 = process.cpuUsage();

function report() {
  target = Infinity;
  const cpu = process.cpuUsage(cpu0);
  process.send({ reached: done, atNs: String(process.hrtime.bigint()), cpuUs: cpu.user + cpu.system });
}

function count(n) {
  done += n;
  if (done >= target) report();
}

process.on('message', (m) => {
  if (m.reset) {
    done = 0;
    target = Infinity;
    cpu0 = process.cpuUsage();
  }
  if (m.until !== undefined) {
    target = m.until;
    if (done >= target) report();
  }
});

function startPerfq(queue, type, concurrency, batch) {
  const { PerformanceQueue } = require('../../bindings/node');
  const q = new PerformanceQueue({ queue });
  if (batch) {
    q.registerBatchProcessor(type, (items) => {
      count(items.length);
      return items.map(() => null);
    }, { concurrency });
  } else {
    q.registerProcessor(type, () => {
      count(1);
      return null;
    }, { concurrency });
  }
  return { ready: Promise.resolve(), close: () => q.close() };
}

function startBull(queue, port, concurrency) {
  const { Worker } = require('bullmq');
  const w = new Worker(queue, async () => {
    count(1);
    return null;
  }, { connection: connectionOf(port), concurrency });
  w.on('error', (e) => console.error(`worker (bullmq): ${e.message}`));
  return { ready: w.waitUntilReady(), close: () => w.close() };
}

async function main() {
  const system = opt('system');
  const concurrency = Number(opt('concurrency', '1'));
  const w = system === 'perfq'
    ? startPerfq(opt('queue'), opt('type'), concurrency, args.includes('--batch'))
    : startBull(opt('queue'), Number(opt('port')), concurrency);
  let closing = null;
  const stop = () => {
    if (closing === null) closing = w.close().finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('disconnect', stop);
  await w.ready;
  process.send({ ready: true });
}

main().catch((e) => {
  console.error(`worker (${opt('system')}): ${e.code || ''} ${e.message}`);
  process.exit(1);
});
