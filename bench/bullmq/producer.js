'use strict';
// One producer process of bench/bullmq (driver.js starts it with an IPC
// channel): connects, warms up, says {ready}, waits for {go}, runs ONE
// scenario and answers {result}. The scenarios are the same code for both
// systems (sides.js).
//
//   node producer.js --system perfq|bullmq --queue Q [--port P] --type T [--mode batch]
//                    --scenario rt|window|bulk|fire|paced --count N [--window W] [--rate R]
//
//   rt      one job at a time: submit, await its completion (latency per job)
//   window  at most W jobs outstanding, N in all, every completion awaited
//   bulk    N jobs in batched submits of W (submitMany / addBulk), each batch
//           awaited to its last completion before the next
//   fire    N submits, at most W unacknowledged, completions never awaited
//           (the driver learns from the worker when the last one was done)
//   paced   as window, but started at R jobs/s (the agent-CPU comparison)
const { openSide } = require('./sides');

const WARMUP = 200;

const args = process.argv.slice(2);
function opt(name, dflt) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
}

function nowNs() {
  return process.hrtime.bigint();  // CLOCK_MONOTONIC: comparable across processes
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

// `lanes` loops each doing one job after another: at most `lanes` jobs
// outstanding, and no Promise.race over a set of W promises per job.
async function inLanes(lanes, count, step) {
  let issued = 0;
  const lane = async () => {
    while (issued < count) {
      issued++;
      await step();
    }
  };
  await Promise.all(Array.from({ length: Math.min(lanes, count) }, lane));
}

async function roundTrip(side, count) {
  const lat = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const t0 = nowNs();
    await side.call();
    lat[i] = Number(nowNs() - t0) / 1000;
  }
  lat.sort();
  return { p50Us: percentile(lat, 50), p90Us: percentile(lat, 90), p99Us: percentile(lat, 99) };
}

async function bulk(side, count, chunk) {
  for (let done = 0; done < count; done += chunk) {
    await side.callMany(Math.min(chunk, count - done));
  }
}

// Starts jobs at `rate` per second (a 1 ms timer hands out what is due),
// at most `window` outstanding; resolves when all `count` are finished.
function paced(side, count, window, rate) {
  return new Promise((resolve, reject) => {
    const t0 = nowNs();
    let issued = 0;
    let finished = 0;
    let inflight = 0;
    let failed = false;
    const onDone = () => {
      inflight--;
      if (++finished === count) {
        clearInterval(timer);
        resolve();
      }
    };
    const onFail = (e) => {
      if (failed) return;
      failed = true;
      clearInterval(timer);
      reject(e);
    };
    const tick = () => {
      const due = Math.min(count, Math.floor((Number(nowNs() - t0) / 1e9) * rate) + 1);
      while (issued < due && inflight < window && !failed) {
        issued++;
        inflight++;
        side.call().then(onDone, onFail);
      }
    };
    const timer = setInterval(tick, 1);
    tick();
  });
}

async function run(side, scenario, count, window, rate) {
  switch (scenario) {
    case 'rt': return roundTrip(side, count);
    case 'window': return inLanes(window, count, () => side.call());
    case 'bulk': return bulk(side, count, window);
    case 'fire': return inLanes(window, count, () => side.fire());
    case 'paced': return paced(side, count, window, rate);
    default: throw new Error(`unknown scenario ${scenario}`);
  }
}

function nextMessage() {
  return new Promise((resolve) => process.once('message', resolve));
}

async function main() {
  const system = opt('system');
  const scenario = opt('scenario');
  const count = Number(opt('count', '10000'));
  const window = Number(opt('window', '256'));
  const rate = Number(opt('rate', '0'));
  const side = openSide(system, {
    queue: opt('queue'),
    port: Number(opt('port', '0')),
    type: opt('type'),
    mode: opt('mode'),
    track: scenario !== 'fire',
  });
  try {
    await side.open();
    // Fire-and-forget warms up with fire(): the driver waits for the worker
    // to have done the WARMUP jobs before it counts the measured ones.
    for (let i = 0; i < WARMUP; i++) await (scenario === 'fire' ? side.fire() : side.call());
    process.send({ ready: true, warmup: WARMUP, ...side.describe() });
    const go = await nextMessage();
    if (!go.go) return;
    const cpu0 = process.cpuUsage();
    const t0 = nowNs();
    const extra = await run(side, scenario, count, window, rate);
    const t1 = nowNs();
    const cpu = process.cpuUsage(cpu0);
    process.send({
      result: {
        count,
        startNs: String(t0),
        endNs: String(t1),
        producerCpuUs: cpu.user + cpu.system,
        ...(extra || {}),
        ...side.stats(),
      },
    });
  } finally {
    await side.close();
  }
}

// The driver gone (Ctrl-C, a crash): nothing will say go or read a result.
const orphaned = () => process.exit(1);
process.on('disconnect', orphaned);

main().then(() => {
  process.off('disconnect', orphaned);
  process.disconnect();
}, (e) => {
  console.error(`producer (${opt('system')} ${opt('scenario')}): ${e.code || ''} ${e.message}`);
  process.exitCode = 1;
  if (process.connected) process.disconnect();
});
