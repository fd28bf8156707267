'use strict';
// The two systems behind one small interface, so that every scenario in
// producer.js runs the same JavaScript against perfq and against BullMQ:
//
//   open()       attach (perfq) / connect to Redis (BullMQ)
//   call()       submit one job, resolve when a worker has finished it
//   callMany(n)  submit n jobs in ONE batched call, resolve when all n have
//                finished: perfq `submitMany` (a loop of `submit` where the
//                binding has no submitMany yet), BullMQ `addBulk`
//   fire()       submit one job, resolve once the system has accepted it;
//                its outcome is never awaited
//   stats()      anything the run should report (BullMQ: completions whose
//                event never arrived)
//   close()
//
// Both carry the same 64-byte JSON payload and get `null` back from a no-op
// processor (worker.js).

// {"d":"xxx..."} is exactly 64 bytes of JSON, as in bindings/node/bench.
const PAYLOAD = Object.freeze({ d: 'x'.repeat(64 - '{"d":""}'.length) });

// ------------------------------------------------------------------ perfq

let perfq = null;  // loaded on first use: a BullMQ-only process never needs the addon
function perfqBinding() {
  if (perfq === null) perfq = require('../../bindings/node');
  return perfq;
}

class PerfqSide {
  // mode: undefined (fifo) or 'batch' (dispatched to a batch processor).
  constructor({ queue, type, mode }) {
    const { PerformanceQueue } = perfqBinding();
    this.q = new PerformanceQueue({ queue, userId: 'bench' });
    this.req = mode === undefined ? { type, payload: PAYLOAD } : { type, mode, payload: PAYLOAD };
    // submitMany and { forget: true } exist since issue 14; an older
    // binding gets a loop of submit (and ignores forget).
    this.hasSubmitMany = typeof this.q.submitMany === 'function';
  }

  describe() {
    return { submitMany: this.hasSubmitMany };
  }

  stats() {
    return {};
  }

  open() {
    return this.q.connect();
  }

  async call() {
    const s = await this.q.submit(this.req);
    check(await this.q.result(s.requestId));
  }

  async callMany(n) {
    const reqs = new Array(n).fill(this.req);
    let answers;
    if (this.hasSubmitMany) {
      answers = await this.q.submitMany(reqs);
    } else {
      answers = [];
      for (const r of reqs) answers.push(await this.q.submit(r));
    }
    if (!Array.isArray(answers) || answers.length !== n) {
      throw new Error('perfq: submitMany did not answer one entry per request');
    }
    await Promise.all(answers.map((entry) => {
      // submitMany answers as Promise.allSettled does; the loop, with answers.
      const a = this.hasSubmitMany ? settledValue(entry) : entry;
      if (a === null || typeof a.requestId !== 'string') {
        throw new Error(`perfq: submitMany answered ${JSON.stringify(entry)}`);
      }
      return this.q.result(a.requestId).then(check);
    }));
  }

  async fire() {
    await this.q.submit(this.req, { forget: true });
  }

  close() {
    return this.q.close();
  }
}

function settledValue(entry) {
  if (entry.status === 'rejected') throw entry.reason;
  return entry.value;
}

function check(outcome) {
  if (outcome.status !== 'completed') {
    throw new Error(`perfq: request ${outcome.status} ${outcome.error || ''} ${outcome.message || ''}`);
  }
}

// ----------------------------------------------------------------- BullMQ

// Jobs are removed from Redis when they finish (what a busy deployment sets;
// keeping 50,000 finished jobs per run would make BullMQ slower, not perfq
// faster).
const JOB_OPTIONS = Object.freeze({ removeOnComplete: true, removeOnFail: true });
const JOB_NAME = 'noop';
// Completions seen before add() answered, or for another producer's jobs
// (every QueueEvents sees every job): kept at most this many.
const EARLY_MAX = 65536;
// A QueueEvents reader that falls behind the trim of the events stream
// never sees some completions (seen here with two producers on a loaded
// machine): every SWEEP_MS, jobs awaited for longer than LOST_AFTER_MS are
// looked up, at most SWEEP_MAX of them; a job that is gone was removed on
// completion (removeOnComplete; a no-op processor does not fail). They are
// counted and reported (lostEvents).
const SWEEP_MS = 1000;
const LOST_AFTER_MS = 2000;
const SWEEP_MAX = 1024;

function connectionOf(port) {
  // maxRetriesPerRequest null: what BullMQ requires of a Worker's connection,
  // used for all for sameness.
  return { host: '127.0.0.1', port, maxRetriesPerRequest: null };
}

class BullSide {
  // track: false for fire-and-forget, where no completion is awaited, so no
  // QueueEvents reader (a producer that does not wait would not run one).
  constructor({ port, queue, track = true }) {
    const { Queue, QueueEvents } = require('bullmq');
    this.queue = new Queue(queue, { connection: connectionOf(port), defaultJobOptions: JOB_OPTIONS });
    this.events = null;
    this.waiting = new Map();  // jobId -> { resolve, reject, since }
    this.early = new Map();  // jobId -> null (completed) | Error (failed)
    this.lostEvents = 0;
    this.sweeping = false;
    this.sweeper = null;
    if (track) {
      // One 'completed' listener for all jobs, not Job.waitUntilFinished:
      // waitUntilFinished adds two listeners and one Redis round trip
      // (isFinished) per job; this is the cheapest way BullMQ offers to
      // learn that a job finished, so it is the kinder choice for BullMQ.
      this.events = new QueueEvents(queue, { connection: connectionOf(port) });
      this.events.on('completed', ({ jobId }) => this._finished(jobId, null));
      this.events.on('failed', ({ jobId, failedReason }) =>
        this._finished(jobId, new Error(`bullmq: job failed: ${failedReason}`)));
      this.sweeper = setInterval(() => this._sweep(), SWEEP_MS);
      this.sweeper.unref();
    }
  }

  stats() {
    return { lostEvents: this.lostEvents };
  }

  async _sweep() {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const old = Date.now() - LOST_AFTER_MS;
      const ids = [];
      for (const [id, w] of this.waiting) {
        if (w.since < old) ids.push(id);
        if (ids.length === SWEEP_MAX) break;
      }
      for (const id of ids) {
        const state = await this.queue.getJobState(id);
        if (state === 'completed' || state === 'unknown' || state === 'failed') {
          if (!this.waiting.has(id)) continue;  // its event came meanwhile
          this.lostEvents++;
          this._finished(id, state === 'failed' ? new Error('bullmq: job failed') : null);
        }
      }
    } finally {
      this.sweeping = false;
    }
  }

  describe() {
    return { bullmq: require('bullmq/package.json').version };
  }

  async open() {
    await this.queue.waitUntilReady();
    if (this.events !== null) await this.events.waitUntilReady();
  }

  _finished(jobId, err) {
    const w = this.waiting.get(jobId);
    if (w === undefined) {
      this.early.set(jobId, err);
      if (this.early.size > EARLY_MAX) this.early.delete(this.early.keys().next().value);
      return;
    }
    this.waiting.delete(jobId);
    if (err === null) w.resolve();
    else w.reject(err);
  }

  _wait(jobId) {
    if (this.early.has(jobId)) {
      const err = this.early.get(jobId);
      this.early.delete(jobId);
      return err === null ? Promise.resolve() : Promise.reject(err);
    }
    return new Promise((resolve, reject) =>
      this.waiting.set(jobId, { resolve, reject, since: Date.now() }));
  }

  async call() {
    const job = await this.queue.add(JOB_NAME, PAYLOAD, JOB_OPTIONS);
    await this._wait(job.id);
  }

  async callMany(n) {
    const jobs = await this.queue.addBulk(
      Array.from({ length: n }, () => ({ name: JOB_NAME, data: PAYLOAD, opts: JOB_OPTIONS })));
    await Promise.all(jobs.map((j) => this._wait(j.id)));
  }

  async fire() {
    await this.queue.add(JOB_NAME, PAYLOAD, JOB_OPTIONS);
  }

  async close() {
    if (this.sweeper !== null) clearInterval(this.sweeper);
    if (this.events !== null) await this.events.close();
    await this.queue.close();
  }
}

function openSide(system, opts) {
  if (system === 'perfq') return new PerfqSide(opts);
  if (system === 'bullmq') return new BullSide(opts);
  throw new Error(`unknown system ${system}`);
}

module.exports = { openSide, connectionOf, PAYLOAD, JOB_NAME };
