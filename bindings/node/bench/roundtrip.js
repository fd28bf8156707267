'use strict';
// Round trip and submit throughput of the Node binding, against an agent
// already running (rate limit off) and perfq-example-worker serving
// bench.echo:
//   node roundtrip.js --queue Q [--count N] [--window W]
// Prints ONE JSON line:
//   {"binding":"node","count":N,"roundTripP50Us":..,"roundTripP90Us":..,
//    "roundTripP99Us":..,"submitPerSec":..}
// (1) round trip: submit, then await the result, one at a time, 64-byte
//     payload; (2) throughput: N submits with at most W outstanding, all
//     results awaited at the end.
const { PerformanceQueue } = require('..');

const args = process.argv.slice(2);
function opt(name, dflt) {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
}
const queue = opt('queue');
const count = Number(opt('count', '10000'));
const window = Number(opt('window', '512'));
if (!queue || !(count > 0)) {
  console.error('usage: roundtrip.js --queue Q [--count N] [--window W]');
  process.exit(2);
}

// {"d":"xxx..."} is exactly 64 bytes of JSON.
const payload = { d: 'x'.repeat(64 - '{"d":""}'.length) };

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function main() {
  const q = new PerformanceQueue({ queue, userId: 'bench' });
  try {
    // Warm-up: touch the code paths and the slots.
    for (let i = 0; i < 200; i++) {
      await q.result((await q.submit({ type: 'bench.echo', payload })).requestId);
    }
    const rounds = Math.min(count, 5000);
    const lat = new Float64Array(rounds);
    for (let i = 0; i < rounds; i++) {
      const t0 = process.hrtime.bigint();
      const s = await q.submit({ type: 'bench.echo', payload });
      const o = await q.result(s.requestId);
      lat[i] = Number(process.hrtime.bigint() - t0) / 1000;
      if (o.status !== 'completed') throw new Error(`request ${o.status}`);
    }
    lat.sort();

    const t0 = process.hrtime.bigint();
    const outstanding = new Set();
    for (let i = 0; i < count; i++) {
      if (outstanding.size >= window) await Promise.race(outstanding);
      const s = await q.submit({ type: 'bench.echo', payload });
      const p = q.result(s.requestId).then(() => outstanding.delete(p));
      outstanding.add(p);
    }
    const submitSecs = Number(process.hrtime.bigint() - t0) / 1e9;
    await Promise.all(outstanding);

    console.log(JSON.stringify({
      binding: 'node',
      count,
      roundTripP50Us: Math.round(percentile(lat, 50)),
      roundTripP90Us: Math.round(percentile(lat, 90)),
      roundTripP99Us: Math.round(percentile(lat, 99)),
      submitPerSec: Math.round(count / submitSecs),
    }));
  } finally {
    await q.close();
  }
}

main().catch((e) => {
  console.error(`roundtrip: ${e.code || ''} ${e.message}`);
  process.exitCode = 1;
});
