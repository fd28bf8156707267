'use strict';
// Without close(): when the environment ends (process.exit(), or a
// worker_thread terminated) while processors hold attempts, a listener is
// attached and a result() is pending, the env cleanup hook joins every
// native thread and the process exits normally.
const test = require('node:test');
const assert = require('node:assert/strict');
const h = require('../testlib/helpers');

for (const mode of ['exit', 'thread']) {
  test(`environment teardown without close() (${mode})`, async (t) => {
    const agent = await h.startAgent(`td${mode}`);
    t.after(() => agent.stop());
    const { spawn } = require('node:child_process');
    const path = require('node:path');
    const child = agent.own(spawn(process.execPath,
      [path.join(h.NODE_DIR, 'testlib', 'fixtures', 'teardown.js'), agent.queue, mode],
      { stdio: ['pipe', 'pipe', 'pipe'] }));
    const err = h.collect(child.stderr);
    if (mode === 'thread') {
      await h.waitLine(child.stdout, (l) => l === 'done', 'the worker_thread to end');
      // The thread's two workers deregistered although this process lives on.
      await h.until(() => JSON.parse(h.perfqctl(agent.queue, ['--json', 'health']))
        .activeWorkers === 0, 'the workers to leave the agent');
      child.stdin.end();
    }
    const exit = await h.waitExit(child);
    assert.deepEqual(exit, { code: 0, signal: null }, err());
    assert.equal(err(), '');
  });
}
