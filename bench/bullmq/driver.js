'use strict';
// perfq beside BullMQ, in one invocation: a private redis-server and a perfq
// agent, the same Node producer and worker scenarios (producer.js,
// worker.js, sides.js) against both, rounds interleaved (perfq first in odd
// rounds, BullMQ first in even ones), then the medians, the ratios and the
// targets. Beside them, in the same run: the C++ client with the C++ worker
// (perfq-client-bench + perfq-example-worker) and Python producer + Python
// worker (bindings/python/bench/roundtrip.py + examples/worker.py).
//
// Run it through bench/scenarios/bullmq.sh, which checks redis-server, the
// build and bullmq's node_modules first. A benchmark, not a test: CI does
// not run it.
//
// Why one Node driver and not bash: every measurement starts worker and
// producer processes, waits for each to be ready, starts the producers
// together, and asks the worker when its last job was done (fire-and-forget
// has no other end). Node's child_process IPC carries those messages without
// fifos or files, and the medians and the table need no second language.
//
// Output: one JSON line per measurement ({"bench":"bullmq",...}), then the
// table. Every child (redis, agent, workers, producers), the perfq segment
// (perfqctl destroy) and the temp dir are cleaned up on exit and on Ctrl-C.
const { spawn, spawnSync, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'build', 'bin');
const USAGE = `usage: bench/scenarios/bullmq.sh [--rounds R] [--count N] [--rt-count N] [--window W]
         [--concurrency 1,8,32] [--pace-rate R] [--pace-count N]
  --rounds       rounds, each system once per scenario per round (default 3)
  --count        jobs per throughput measurement (default 50000)
  --rt-count     round trips per latency measurement (default 2000)
  --window       outstanding jobs per producer (default 256)
  --concurrency  worker concurrencies tried; each system's best counts (default 1,8,32)
  --pace-rate    jobs/s of the agent-CPU comparison (default 2000)
  --pace-count   jobs of the agent-CPU comparison (default 10000)`;

function parseOptions(argv) {
  const o = {
    rounds: 3, count: 50000, rtCount: 2000, window: 256, concurrency: [1, 8, 32],
    paceRate: 2000, paceCount: 10000,
  };
  const names = {
    '--rounds': 'rounds', '--count': 'count', '--rt-count': 'rtCount', '--window': 'window',
    '--pace-rate': 'paceRate', '--pace-count': 'paceCount',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const v = argv[i + 1];
    if (argv[i] === '--concurrency' && v !== undefined) {
      o.concurrency = v.split(',').map(Number);
    } else if (names[argv[i]] !== undefined && v !== undefined) {
      o[names[argv[i]]] = Number(v);
    } else {
      console.error(USAGE);
      process.exit(2);
    }
  }
  const counts = [o.rounds, o.count, o.rtCount, o.window, o.paceRate, o.paceCount, ...o.concurrency];
  if (!counts.every((n) => Number.isInteger(n) && n > 0) || o.concurrency.some((c) => c > 64)) {
    console.error(USAGE);
    process.exit(2);
  }
  return o;
}

const opts = parseOptions(process.argv.slice(2));

// ------------------------------------------------------------ processes

const STEP_TIMEOUT_MS = 600_000;  // no single measurement may take longer
const STOP_TIMEOUT_MS = 10_000;
const children = new Set();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'perfq-bullmq-'));
const perfqQueue = `bullbench-${process.pid}`;
let cleaned = false;

function track(child, name) {
  child.benchName = name;
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function exited(child) {
  return child.exitCode !== null || child.signalCode !== null;
}

function waitExit(child, ms) {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

async function stop(child) {
  if (exited(child)) return;
  child.kill('SIGTERM');
  if (!(await waitExit(child, STOP_TIMEOUT_MS))) {
    console.error(`bullmq bench: ${child.benchName} did not stop on SIGTERM; killing it`);
    child.kill('SIGKILL');
    await waitExit(child, STOP_TIMEOUT_MS);
  }
}

// Workers and producers first, then the agent and redis they talk to.
async function cleanup() {
  if (cleaned) return;
  cleaned = true;
  const servers = new Set(['agent', 'redis-server']);
  const all = [...children];
  await Promise.all(all.filter((c) => !servers.has(c.benchName)).map(stop));
  await Promise.all(all.filter((c) => servers.has(c.benchName)).map(stop));
  spawnSync(path.join(BIN, 'perfqctl'), ['--queue', perfqQueue, 'destroy'], { stdio: 'ignore' });
  fs.rmSync(tmp, { recursive: true, force: true });
}

// The last resort when the process ends some other way: no waiting here.
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  if (!cleaned) {
    spawnSync(path.join(BIN, 'perfqctl'), ['--queue', perfqQueue, 'destroy'], { stdio: 'ignore' });
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    console.error(`\nbullmq bench: ${sig}, cleaning up`);
    cleanup().finally(() => process.exit(130));
  });
}

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

// Resolves with the first line of `stream` matching `re`.
function lineMatching(child, stream, re, ms, what) {
  const rl = readline.createInterface({ input: stream });
  const found = new Promise((resolve, reject) => {
    rl.on('line', (l) => {
      if (re.test(l)) {
        rl.removeAllListeners('line');
        rl.on('line', () => {});  // keep draining the pipe
        resolve(l);
      }
    });
    child.once('exit', (code) => reject(new Error(`${what} exited (${code}) before it was ready`)));
  });
  return withTimeout(found, ms, what);
}

// Resolves with the next IPC message of `child` that has `key`.
function message(child, key, ms, what) {
  const got = new Promise((resolve, reject) => {
    const onMessage = (m) => {
      if (m[key] === undefined) return;
      child.off('message', onMessage);
      resolve(m);
    };
    child.on('message', onMessage);
    child.once('exit', (code) => reject(new Error(`${what} exited (${code})`)));
  });
  return withTimeout(got, ms, what);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());

// utime + stime of every thread of `pid`, in microseconds (CLK_TCK resolution).
function cpuUs(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');  // f[0] is field 3, state
  return ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK;
}

// ------------------------------------------------------------ servers

async function startRedis() {
  const port = await freePort();
  const child = track(spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', tmp, '--logfile', '',
  ], { stdio: ['ignore', 'pipe', 'inherit'] }), 'redis-server');
  await lineMatching(child, child.stdout, /Ready to accept connections/, 20_000, 'redis-server');
  const version = spawnSync('redis-server', ['--version']).stdout.toString().trim();
  return { pid: child.pid, port, version };
}

// As bench/scenarios/bindings.sh starts it (rate limit off, idle=park), plus:
// batches of 64 that leave after 1 ms at the latest (a window of 256 fills
// four), and room for 65536 queued requests so that fire-and-forget is not
// held back by admission (Redis has no bound either); 512-byte slots keep
// that segment small (the payload is 64 bytes).
const AGENT_SETTINGS = [
  '--max-requests-per-user-per-minute', '0', '--max-concurrent-workers', '64',
  '--batch-size', '64', '--batch-interval-ms', '1',
  '--max-queue-depth', '65536', '--slot-payload-bytes', '512', '--max-clients', '128',
];

async function startAgent() {
  const child = track(spawn(path.join(BIN, 'perfq-agent'), [
    '--queue', perfqQueue, '--data-dir', path.join(tmp, 'data'), '--http', 'off', ...AGENT_SETTINGS,
  ], { stdio: ['ignore', 'ignore', 'pipe'] }), 'agent');
  const first = await lineMatching(child, child.stderr, /./, 20_000, 'perfq-agent');
  return { pid: child.pid, first };
}

// ------------------------------------------------------------ workers

function nodeChild(script, args, name) {
  return track(spawn(process.execPath, [path.join(__dirname, script), ...args],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }), name);
}

async function startNodeWorker(system, queue, type, concurrency, batch) {
  const args = ['--system', system, '--queue', queue, '--port', String(redis.port), '--type', type,
    '--concurrency', String(concurrency)];
  if (batch) args.push('--batch');
  const child = nodeChild('worker.js', args, `${system} worker`);
  await message(child, 'ready', 30_000, `${system} worker`);
  return {
    pid: child.pid,
    until: (n) => {
      const m = message(child, 'reached', STEP_TIMEOUT_MS, `${system} worker (until ${n})`);
      child.send({ until: n });
      return m;
    },
    reset: () => child.send({ reset: true }),
    stop: () => stop(child),
  };
}

// A process that prints "ready" on stdout when it serves (the C++ and the
// Python example workers); it cannot count, so until() answers at once.
async function startReadyWorker(cmd, args, name, env) {
  const child = track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], env }), name);
  await lineMatching(child, child.stdout, /^ready$/, 30_000, name);
  return {
    pid: child.pid,
    until: () => Promise.resolve({}),
    reset: () => {},
    stop: () => stop(child),
  };
}

function startCppWorker(type) {
  return startReadyWorker(path.join(BIN, 'perfq-example-worker'), ['--queue', perfqQueue, type],
    'C++ worker');
}

const PY_ENV = { ...process.env, PYTHONPATH: path.join(ROOT, 'bindings', 'python') };

function startPythonWorker(type) {
  return startReadyWorker('python3', [
    path.join(ROOT, 'bindings', 'python', 'examples', 'worker.py'), '--queue', perfqQueue, type,
  ], 'Python worker', PY_ENV);
}

async function startProducer(system, queue, type, mode, scenario, count, rate) {
  const args = ['--system', system, '--queue', queue, '--port', String(redis.port), '--type', type,
    '--scenario', scenario, '--count', String(count), '--window', String(opts.window),
    '--rate', String(rate || 0)];
  if (mode !== undefined) args.push('--mode', mode);
  const child = nodeChild('producer.js', args, `${system} producer`);
  const ready = await message(child, 'ready', STEP_TIMEOUT_MS, `${system} producer`);
  return {
    ready,
    go: () => {
      const m = message(child, 'result', STEP_TIMEOUT_MS, `${system} producer (${scenario})`);
      child.send({ go: true });
      return m.then((r) => r.result);
    },
    done: () => waitExit(child, STOP_TIMEOUT_MS).then(() => stop(child)),
  };
}

// Runs a command to its end; resolves with its stdout.
function runToEnd(cmd, args, env) {
  return withTimeout(new Promise((resolve, reject) => {
    const child = track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], env }),
      path.basename(cmd));
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.once('exit', (code) => (code === 0 ? resolve(out)
      : reject(new Error(`${path.basename(cmd)} exited ${code}`))));
  }), STEP_TIMEOUT_MS, path.basename(cmd));
}

// ------------------------------------------------------------ measurements

const lines = [];  // every measurement, as printed
let bullQueueSeq = 0;

function emit(m) {
  const line = { bench: 'bullmq', round, ...m };
  lines.push(line);
  console.log(JSON.stringify(line));
}

let round = 0;
let redis = null;
let agent = null;

// One Node measurement: `w` workers of `system` and `producers` producer
// processes; throughput over all producers from the first start to the last
// end. Fire-and-forget also reports when the worker finished the last job.
// Server CPU: the agent's (perfq) or redis-server's (BullMQ).
async function measure({ system, scenario, concurrency = 1, batch = false, producers = 1,
  count, rate, worker: workerKind = 'node' }) {
  const queue = system === 'perfq' ? perfqQueue : `bench-${process.pid}-${++bullQueueSeq}`;
  let type = batch ? 'bench.batch' : 'bench.noop';
  let w;
  if (workerKind === 'cpp') {
    type = 'bench.cpp';
    w = await startCppWorker(type);
  } else {
    w = await startNodeWorker(system, queue, type, concurrency, batch);
  }
  const started = [];
  try {
    const per = Math.floor(count / producers);
    for (let i = 0; i < producers; i++) {
      started.push(await startProducer(system, queue, type, batch ? 'batch' : undefined, scenario,
        per, rate));
    }
    await w.until(started.reduce((n, p) => n + p.ready.warmup, 0));
    w.reset();
    const serverPid = system === 'perfq' ? agent.pid : redis.pid;
    const server0 = cpuUs(serverPid);
    const results = await Promise.all(started.map((p) => p.go()));
    const total = per * producers;
    const reached = await w.until(total);
    const server1 = cpuUs(serverPid);
    const start = results.reduce((a, r) => (BigInt(r.startNs) < a ? BigInt(r.startNs) : a),
      BigInt(results[0].startNs));
    const end = results.reduce((a, r) => (BigInt(r.endNs) > a ? BigInt(r.endNs) : a),
      BigInt(results[0].endNs));
    const m = {
      system, scenario, worker: workerKind, concurrency, batch, producers, count: total,
      perSec: Math.round(total / (Number(end - start) / 1e9)),
      serverCpuUsPerReq: round2((server1 - server0) / total),
      producerCpuUsPerReq: round2(results.reduce((a, r) => a + r.producerCpuUs, 0) / total),
      ...(reached.cpuUs !== undefined ? { workerCpuUsPerReq: round2(reached.cpuUs / total) } : {}),
      ...started[0].ready,
    };
    delete m.ready;
    delete m.warmup;
    if (scenario === 'fire') {
      m.drainedPerSec = Math.round(total / (Number(BigInt(reached.atNs) - start) / 1e9));
    }
    if (scenario === 'rt') {
      Object.assign(m, { p50Us: round2(results[0].p50Us), p90Us: round2(results[0].p90Us),
        p99Us: round2(results[0].p99Us) });
    }
    if (scenario === 'paced') m.rate = rate;
    if (results[0].lostEvents !== undefined) {
      m.lostEvents = results.reduce((a, r) => a + r.lostEvents, 0);
    }
    emit(m);
    return m;
  } finally {
    await Promise.all(started.map((p) => p.done()));
    await w.stop();
  }
}

function round2(x) {
  return Math.round(x * 100) / 100;
}

async function measureCpp() {
  const w = await startCppWorker('bench.cpp');
  try {
    const out = await runToEnd(path.join(BIN, 'perfq-client-bench'), [
      '--queue', perfqQueue, '--type', 'bench.cpp', '--count', String(opts.count),
      '--window', String(opts.window), '--round-trips', String(opts.rtCount),
    ]);
    const r = JSON.parse(out.trim().split('\n').pop());
    emit({ system: 'perfq', scenario: 'rt', worker: 'cpp', producer: 'cpp',
      p50Us: r.roundTripP50Us, p90Us: r.roundTripP90Us, p99Us: r.roundTripP99Us });
    emit({ system: 'perfq', scenario: 'window', worker: 'cpp', producer: 'cpp', count: r.count,
      perSec: r.submitPerSec });
  } finally {
    await w.stop();
  }
}

async function measurePython() {
  const w = await startPythonWorker('bench.py');
  try {
    const out = await runToEnd('python3', [
      path.join(ROOT, 'bindings', 'python', 'bench', 'roundtrip.py'), '--queue', perfqQueue,
      '--type', 'bench.py', '--count', String(opts.count), '--window', String(opts.window),
      '--round-trips', '200',
    ], PY_ENV);
    const r = JSON.parse(out.trim().split('\n').pop());
    emit({ system: 'perfq', scenario: 'window', worker: 'python', producer: 'python',
      count: r.count, perSec: r.submitPerSec });
  } finally {
    await w.stop();
  }
}

async function oneRound() {
  const order = round % 2 === 1 ? ['perfq', 'bullmq'] : ['bullmq', 'perfq'];
  await measureCpp();
  for (const system of order) await measure({ system, scenario: 'rt', count: opts.rtCount });
  const best = {};
  for (const concurrency of opts.concurrency) {
    for (const system of order) {
      const m = await measure({ system, scenario: 'window', concurrency, count: opts.count });
      if (best[system] === undefined || m.perSec > best[system].perSec) best[system] = m;
    }
  }
  for (const concurrency of opts.concurrency) {
    await measure({ system: 'perfq', scenario: 'window', concurrency, batch: true, count: opts.count });
  }
  for (const scenario of ['bulk', 'fire']) {
    for (const system of order) {
      await measure({ system, scenario, concurrency: best[system].concurrency, count: opts.count });
    }
  }
  for (const system of order) {
    await measure({ system, scenario: 'window', concurrency: best[system].concurrency,
      producers: 2, count: opts.count });
  }
  await measurePython();
  const workers = round % 2 === 1 ? ['cpp', 'node'] : ['node', 'cpp'];
  for (const worker of workers) {
    await measure({ system: 'perfq', scenario: 'paced', worker, count: opts.paceCount,
      rate: opts.paceRate });
  }
}

// ------------------------------------------------------------ summary

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const h = Math.floor(s.length / 2);
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

function pick(pred) {
  return lines.filter(pred);
}

// Per round: the value `f` gives for the lines matching `pred`; with
// best=true the highest perSec of those lines in that round.
function perRound(pred, f, best = false) {
  const out = [];
  for (let r = 1; r <= opts.rounds; r++) {
    const ms = pick((l) => l.round === r && pred(l));
    if (ms.length === 0) continue;
    const m = best ? ms.reduce((a, b) => (b.perSec > a.perSec ? b : a)) : ms[0];
    out.push(f(m));
  }
  return out;
}

const is = (fields) => (l) => Object.entries(fields).every(([k, v]) => l[k] === v);

function fmtRate(x) {
  return Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '-';
}
function fmtX(x) {
  return Number.isFinite(x) ? `${x >= 10 ? x.toFixed(0) : x.toFixed(2)}x` : '-';
}
function fmtUs(x) {
  return Number.isFinite(x) ? `${x.toFixed(1)} us` : '-';
}
function range(xs, fmt) {
  if (xs.length === 0) return '-';
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return lo === hi ? fmt(lo) : `${fmt(lo)} .. ${fmt(hi)}`;
}

// Ratios of two per-round series, round by round (same run, same round).
function ratios(a, b) {
  return a.map((x, i) => x / b[i]).filter(Number.isFinite);
}

function summarize() {
  const nodeWin = (system, extra = {}) => is({ system, scenario: 'window', worker: 'node',
    producers: 1, batch: false, ...extra });
  const rate = (l) => l.perSec;
  const rows = [];
  const row = (what, values, fmt, note = '') => {
    rows.push([what, fmt(median(values)), range(values, fmt), note]);
  };

  const cppRt = perRound(is({ scenario: 'rt', worker: 'cpp' }), (l) => l.p50Us);
  const cppRt99 = perRound(is({ scenario: 'rt', worker: 'cpp' }), (l) => l.p99Us);
  const pqRt = perRound(is({ system: 'perfq', scenario: 'rt', worker: 'node' }), (l) => l.p50Us);
  const pqRt99 = perRound(is({ system: 'perfq', scenario: 'rt', worker: 'node' }), (l) => l.p99Us);
  const bqRt = perRound(is({ system: 'bullmq', scenario: 'rt' }), (l) => l.p50Us);
  const bqRt99 = perRound(is({ system: 'bullmq', scenario: 'rt' }), (l) => l.p99Us);
  row('round trip p50, C++ -> C++ (perfq)', cppRt, fmtUs);
  row('round trip p50, Node -> Node, perfq', pqRt, fmtUs);
  row('round trip p50, Node -> Node, BullMQ', bqRt, fmtUs);
  row('round trip p99, C++ -> C++ (perfq)', cppRt99, fmtUs);
  row('round trip p99, Node -> Node, perfq', pqRt99, fmtUs);
  row('round trip p99, Node -> Node, BullMQ', bqRt99, fmtUs);
  row('  BullMQ / perfq, round trip p50', ratios(bqRt, pqRt), fmtX);

  const cppWin = perRound(is({ scenario: 'window', worker: 'cpp' }), rate);
  const pqWin = perRound(nodeWin('perfq'), rate, true);
  const pqBatch = perRound(nodeWin('perfq', { batch: true }), rate, true);
  const bqWin = perRound(nodeWin('bullmq'), rate, true);
  const bestC = (system, batch = false) => {
    const cs = perRound(nodeWin(system, { batch }), (l) => l.concurrency, true);
    return `concurrency ${[...new Set(cs)].join('/')}`;
  };
  const W = opts.window;
  row(`window ${W}, C++ -> C++ worker, jobs/s`, cppWin, fmtRate);
  row(`window ${W}, Node -> Node, perfq, jobs/s`, pqWin, fmtRate, bestC('perfq'));
  row(`window ${W}, Node -> Node batch processor, perfq`, pqBatch, fmtRate, bestC('perfq', true));
  row(`window ${W}, Node -> Node, BullMQ, jobs/s`, bqWin, fmtRate, bestC('bullmq'));
  for (const c of opts.concurrency) {
    row(`  perfq / BullMQ at concurrency ${c}`,
      ratios(perRound(nodeWin('perfq', { concurrency: c }), rate),
        perRound(nodeWin('bullmq', { concurrency: c }), rate)), fmtX);
  }

  const bulk = (s) => perRound(is({ system: s, scenario: 'bulk' }), rate);
  const submitMany = pick(is({ system: 'perfq', scenario: 'bulk' }))[0];
  row(`bulk ${W}: perfq ${submitMany && submitMany.submitMany ? 'submitMany' : 'submit loop (no submitMany yet)'}`,
    bulk('perfq'), fmtRate);
  row(`bulk ${W}: BullMQ addBulk`, bulk('bullmq'), fmtRate);
  const fire = (s, k) => perRound(is({ system: s, scenario: 'fire' }), (l) => l[k]);
  row('fire-and-forget, perfq, submits/s', fire('perfq', 'perSec'), fmtRate);
  row('fire-and-forget, BullMQ, adds/s', fire('bullmq', 'perSec'), fmtRate);
  row('fire-and-forget, perfq, all processed, jobs/s', fire('perfq', 'drainedPerSec'), fmtRate);
  row('fire-and-forget, BullMQ, all processed, jobs/s', fire('bullmq', 'drainedPerSec'), fmtRate);
  const two = (s) => perRound(is({ system: s, scenario: 'window', producers: 2 }), rate);
  row(`two producers, window ${W} each, perfq`, two('perfq'), fmtRate);
  row(`two producers, window ${W} each, BullMQ`, two('bullmq'), fmtRate);
  const py = perRound(is({ scenario: 'window', worker: 'python' }), rate);
  row(`window ${W}, Python -> Python worker (perfq)`, py, fmtRate);

  const cpu = (l) => l.serverCpuUsPerReq;
  const pacedCpp = perRound(is({ scenario: 'paced', worker: 'cpp' }), cpu);
  const pacedNode = perRound(is({ scenario: 'paced', worker: 'node' }), cpu);
  row(`agent CPU per job at ${opts.paceRate}/s, C++ worker`, pacedCpp, fmtUs);
  row(`agent CPU per job at ${opts.paceRate}/s, Node worker`, pacedNode, fmtUs);
  row(`server CPU per job, window ${W}: perfq agent`, perRound(nodeWin('perfq'), cpu, true), fmtUs);
  row(`server CPU per job, window ${W}: redis-server`, perRound(nodeWin('bullmq'), cpu, true), fmtUs);
  const pc = (s, k) => perRound(nodeWin(s), (l) => l[k], true);
  row(`producer CPU per job, window ${W}: perfq / BullMQ`, pc('perfq', 'producerCpuUsPerReq'), fmtUs,
    `BullMQ ${fmtUs(median(pc('bullmq', 'producerCpuUsPerReq')))}`);
  row(`worker CPU per job, window ${W}: perfq / BullMQ`, pc('perfq', 'workerCpuUsPerReq'), fmtUs,
    `BullMQ ${fmtUs(median(pc('bullmq', 'workerCpuUsPerReq')))}`);

  console.log(`\n| measurement (median of ${opts.rounds} rounds) | median | range over rounds | note |`);
  console.log('|---|---|---|---|');
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);

  const targets = [
    ['window: perfq Node -> Node >= 100x BullMQ', ratios(pqWin, bqWin), (x) => x >= 100],
    ['window: C++ -> C++ rate / perfq Node -> Node <= 4', ratios(cppWin, pqWin), (x) => x <= 4],
    ['Node -> Node round trip p50 <= 2x C++ -> C++', ratios(pqRt, cppRt), (x) => x <= 2],
    ['window: perfq Python -> Python >= 30x BullMQ (Node)', ratios(py, bqWin), (x) => x >= 30],
    ['agent CPU per job, Node workers / C++ workers <= 2', ratios(pacedNode, pacedCpp), (x) => x <= 2],
  ];
  console.log('\n| target (ratio per round, same run) | median | range | verdict |');
  console.log('|---|---|---|---|');
  for (const [what, xs, ok] of targets) {
    const m = median(xs);
    console.log(`| ${what} | ${fmtX(m)} | ${range(xs, fmtX)} | ${ok(m) ? 'met' : 'not met'} |`);
  }
}

// ------------------------------------------------------------ main

async function main() {
  redis = await startRedis();
  agent = await startAgent();
  const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.*)$/m) || [])[1];
  console.log(`== perfq beside BullMQ ${require('bullmq/package.json').version} ` +
    `(${redis.version.split(' ').slice(0, 3).join(' ')}), ${new Date().toISOString()}, ` +
    `${os.cpus().length} CPUs (${cpu}), Node ${process.version}`);
  console.log(`== agent: ${agent.first}`);
  console.log(`== ${opts.rounds} rounds; ${opts.count} jobs per throughput run, ${opts.rtCount} ` +
    `round trips, window ${opts.window}, worker concurrency ${opts.concurrency.join('/')}`);
  for (round = 1; round <= opts.rounds; round++) {
    const t0 = Date.now();
    await oneRound();
    console.error(`bullmq bench: round ${round} took ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  summarize();
}

main().then(cleanup, async (e) => {
  console.error(`bullmq bench: ${e.message}`);
  process.exitCode = 1;
  await cleanup();
});
