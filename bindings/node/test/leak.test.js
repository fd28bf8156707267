'use strict';
// Test point 4: no leak. 100,000 submits and results (rate limit off, the
// C++ example worker serving, at most WINDOW outstanding); memory after a
// 10,000 warm-up, at 55,000 and after the 100,000 must stay within the
// bounds below. The process still settles in for a while after 10,000
// requests (rss grows 5-9 MB until ~20,000, then stays flat to 400,000 and
// beyond), hence the wider bound from the warm-up and the tight one over
// the second half.
// A binding that kept anything per request (its id -> Future map never
// erased: ~300 bytes of native memory each, ~27 MB over 90,000 requests;
// the JS outcome cache never evicted: ~20 MB of heap) fails.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const h = require('../testlib/helpers');

const WARMUP = 10000;
const TOTAL = 100000;
const WINDOW = 256;
const MB = 1024 * 1024;
// Documented in README.md.
const RSS_GROWTH_MAX = 16 * MB; // warm-up -> end
const RSS_SECOND_HALF_MAX = 6 * MB; // 55,000 -> 100,000
const HEAP_GROWTH_MAX = 4 * MB;
const EXTERNAL_GROWTH_MAX = 1 * MB;

test('100,000 submits and results do not grow memory', { timeout: 300000 }, async (t) => {
  const agent = await h.startAgent('leak', ['--max-queue-depth', '4096']);
  t.after(() => agent.stop());
  await h.startCppWorker(agent, ['leak.t']);
  const child = agent.own(spawn(process.execPath, [
    '--expose-gc', '--min-semi-space-size=16', '--max-semi-space-size=16',
    path.join(h.NODE_DIR, 'testlib', 'fixtures', 'leak_workload.js'),
    agent.queue, 'leak.t', String(WARMUP), String(TOTAL), String(WINDOW),
  ], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const out = h.collect(child.stdout);
  const err = h.collect(child.stderr);
  const exit = await h.waitExit(child, 240000);
  assert.equal(exit.code, 0, err());
  const r = JSON.parse(out().trim());
  assert.equal(r.completed, TOTAL);
  const growth = {
    rss: r.end.rss - r.warm.rss,
    rssSecondHalf: r.end.rss - r.mid.rss,
    heapUsed: r.end.heapUsed - r.warm.heapUsed,
    external: r.end.external - r.warm.external,
  };
  t.diagnostic(`memory growth after the warm-up (bytes): ${JSON.stringify(growth)}`);
  assert.ok(growth.rss < RSS_GROWTH_MAX, `rss grew ${growth.rss} bytes`);
  assert.ok(growth.rssSecondHalf < RSS_SECOND_HALF_MAX,
    `rss grew ${growth.rssSecondHalf} bytes from 55,000 to 100,000`);
  assert.ok(growth.heapUsed < HEAP_GROWTH_MAX, `heapUsed grew ${growth.heapUsed} bytes`);
  assert.ok(growth.external < EXTERNAL_GROWTH_MAX, `external grew ${growth.external} bytes`);
});
