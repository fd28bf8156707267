'use strict';
// Test support: a real perfq-agent on a queue of its own (unique name, temp
// data dir), child processes, and bounded waits on events (never sleeps).
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const BIN = process.env.PERFQ_BIN_DIR ||
  path.join(__dirname, '..', '..', '..', 'build', 'bin');
const NODE_DIR = path.join(__dirname, '..');
const WAIT_MS = 20000; // bound on every wait for a line, an exit, an event

let counter = 0;
function uniqueQueue(tag) {
  counter += 1;
  return `node-${tag}-${process.pid}-${counter}-${Date.now().toString(36)}`;
}

// Resolves with the first line `pred` accepts on `stream`; rejects when the
// stream ends first or after `ms`.
function waitLine(stream, pred, what, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: stream });
    let settled = false;
    const finish = (err, line) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      rl.close();
      if (err) reject(err);
      else resolve(line);
    };
    const timer = setTimeout(() => finish(new Error(`timed out waiting for ${what}`)), ms);
    rl.on('line', (line) => {
      if (pred(line)) finish(null, line);
    });
    rl.on('close', () => finish(new Error(`stream ended before ${what}`)));
  });
}

function waitExit(child, ms = WAIT_MS) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pid ${child.pid} did not exit`)), ms);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

// Starts perfq-agent; resolves once its first stderr line says the segment
// is ready. `flags`: extra settings, e.g. ['--max-retry-attempts', '2'].
async function startAgent(tag, flags = []) {
  const queue = uniqueQueue(tag);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'perfq-node-'));
  const args = ['--queue', queue, '--data-dir', path.join(dir, 'data'), '--http', 'off',
    '--max-requests-per-user-per-minute', '0', ...flags];
  const child = spawn(path.join(BIN, 'perfq-agent'), args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const children = [];
  const agent = {
    queue,
    dir,
    child,
    children,
    // A child process to kill on stop().
    own(c) {
      children.push(c);
      return c;
    },
    async stop() {
      for (const c of children) {
        if (c.exitCode === null && c.signalCode === null) {
          c.kill('SIGKILL');
          await waitExit(c).catch(() => {});
        }
      }
      child.kill('SIGTERM');
      await waitExit(child).catch(() => child.kill('SIGKILL'));
      try {
        execFileSync(path.join(BIN, 'perfqctl'), ['--queue', queue, 'destroy'], { stdio: 'ignore' });
      } catch {
        // already gone
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  await waitLine(child.stderr, () => true, 'the agent\'s first stderr line');
  child.stderr.resume(); // keep draining it
  return agent;
}

// perfq-example-worker serving `types`; resolves once it printed "ready".
async function startCppWorker(agent, types, failing = []) {
  const args = ['--queue', agent.queue];
  for (const f of failing) args.push('--fail', f);
  args.push(...types);
  const w = agent.own(spawn(path.join(BIN, 'perfq-example-worker'), args,
    { stdio: ['ignore', 'pipe', 'inherit'] }));
  await waitLine(w.stdout, (l) => l === 'ready', 'the C++ worker\'s ready line');
  w.stdout.resume();
  return w;
}

// A Node script of this package (examples/..., test/fixtures/...).
function startNode(agent, script, args = []) {
  return agent.own(spawn(process.execPath, [path.join(NODE_DIR, script), ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] }));
}

function collect(stream) {
  let text = '';
  stream.setEncoding('utf8');
  stream.on('data', (d) => { text += d; });
  return () => text;
}

function perfqctl(queue, args) {
  return execFileSync(path.join(BIN, 'perfqctl'), ['--queue', queue, ...args], { encoding: 'utf8' });
}

// Re-asks `probe` (no sleeping: each probe is itself an await on the agent
// or on setImmediate) until it returns a truthy value, at most `ms`.
async function until(probe, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

// Resolves with the first event `pred` accepts from `q.on(name)`.
function nextEvent(q, name, pred = () => true, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      q.off(name, fn);
      reject(new Error(`timed out waiting for ${name}`));
    }, ms);
    function fn(ev) {
      if (!pred(ev)) return;
      clearTimeout(timer);
      q.off(name, fn);
      resolve(ev);
    }
    q.on(name, fn);
  });
}

const perfq = require('..');

module.exports = {
  BIN, NODE_DIR, WAIT_MS, perfq, startAgent, startCppWorker, startNode, waitLine, waitExit,
  collect, perfqctl, until, nextEvent, uniqueQueue,
};
