'use strict';
// perfq for Node.js: PerformanceQueue, a producer and worker of a perfq queue
// (a shared-memory segment an agent serves), shaped like the seed's NestJS
// PerformanceQueueService. See README.md for every decision made here.
const path = require('node:path');
const { EventEmitter } = require('node:events');

function loadAddon() {
  const file = process.env.PERFQ_NODE_ADDON ||
    path.join(__dirname, 'build', 'Release', 'perfq.node');
  try {
    return require(file);
  } catch (e) {
    if (e.code !== 'MODULE_NOT_FOUND') throw e;
    const err = new Error(`perfq: the native addon ${file} is missing; build it with ` +
      '`cmake --preset release && cmake --build build --target perfq_node` (which stages it ' +
      'there), or set PERFQ_NODE_ADDON to a built perfq_node.node', { cause: e });
    err.code = 'ERR_PERFQ_ADDON_MISSING';
    throw err;
  }
}

const native = loadAddon();

// SPEC §5 events, plus the binding's own.
const EVENT_NAMES = Object.freeze([
  'request.submitted', 'request.assigned', 'request.processing', 'request.completed',
  'request.failed', 'request.timeout', 'request.cancelled', 'request.retrying',
  'request.dead_lettered', 'queue.full', 'queue.empty', 'events.missed', '*',
]);

const STATUS_CODES = Object.freeze({
  INVALID_REQUEST: 400, INVALID_MODE: 400, INVALID_PRIORITY: 400, INVALID_STATUS: 400,
  NOT_FOUND: 404,
});

const DEFAULT_OUTCOME_CACHE = 1000;
const DEFAULT_CLOSE_TIMEOUT_MS = 5000;

// A processor error that is not worth retrying: the request goes to the
// dead-letter queue after this attempt.
class PermanentError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'PermanentError';
    this.permanent = true;
  }
}

function codedError(code, message) {
  const e = new Error(message);
  e.code = code;
  if (STATUS_CODES[code] !== undefined) e.statusCode = STATUS_CODES[code];
  return e;
}

function closedError() {
  return codedError('ERR_PERFQ_CLOSED', 'the PerformanceQueue is closed');
}

function isPlainObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

// JSON text of a payload or metadata object; the value never appears in the
// error message.
function objectText(value, what) {
  if (value === undefined || value === null) return undefined;
  if (!isPlainObject(value)) throw codedError('INVALID_REQUEST', `${what} must be a JSON object`);
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    throw codedError('INVALID_REQUEST', `${what} is not serializable as JSON`);
  }
  return text;
}

// What JSON text may start with: whitespace, { [ " - 0-9 t f n.
const JSON_FIRST = new Set([9, 10, 13, 32, 34, 45, 91, 102, 110, 116, 123,
  48, 49, 50, 51, 52, 53, 54, 55, 56, 57]);

function parseText(text) {
  if (text === undefined || text === '') return undefined;
  // Raw text from a C/C++ producer or processor is passed over without a
  // throwing JSON.parse (a thrown SyntaxError costs microseconds).
  if (!JSON_FIRST.has(text.charCodeAt(0))) return text;
  try {
    return JSON.parse(text);
  } catch {
    return text; // not JSON (a C/C++ producer or processor sent raw bytes)
  }
}

function isBytes(v) {
  return v instanceof Uint8Array;  // Buffer included
}

// A payload as sent: bytes as they are, an object as JSON text.
function payloadOf(value) {
  if (isBytes(value)) return value;
  return objectText(value, 'payload') ?? '{}';
}

function replyOf(value) {
  if (isBytes(value)) return [0, value];  // raw bytes: no JSON
  let text;
  try {
    text = JSON.stringify(value === undefined ? null : value);
  } catch {
    return [1, 'processor result is not serializable as JSON'];
  }
  return [0, text === undefined ? 'null' : text];
}

function errorReply(err) {
  const permanent = err !== null && typeof err === 'object' && err.permanent === true;
  let message;
  if (err instanceof Error) message = err.message || err.name;
  else message = String(err);
  return [permanent ? 2 : 1, message];
}

function jobOf(item) {
  const ctx = item.ctx;
  ctx.metadata = parseText(ctx.metadata);
  // A raw registration gets a Buffer, never parsed.
  return { payload: isBytes(item.payload) ? item.payload : parseText(item.payload), ctx };
}

class PerformanceQueue {
  /**
   * @param {{queue: string, userId?: string, admin?: boolean,
   *          outcomeCacheSize?: number, closeTimeoutMs?: number}} options
   */
  constructor(options = {}) {
    const { queue, userId, admin = false } = options;
    if (typeof queue !== 'string' || queue.length === 0) {
      const e = new TypeError('options.queue must be a non-empty string');
      e.code = 'ERR_INVALID_ARG_TYPE';
      throw e;
    }
    this.queue = queue;
    this.userId = userId;
    this.admin = admin === true;
    this._outcomeCacheSize = options.outcomeCacheSize ?? DEFAULT_OUTCOME_CACHE;
    this._closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    this._closed = false;
    this._closing = null;
    this._connected = false;
    this._outcomes = new Map(); // requestId -> outcome (recent, bounded)
    this._waiters = new Map(); // requestId -> [{resolve, reject}]
    this._waiting = 0; // result() promises pending
    this._emitter = new EventEmitter();
    this._listening = false;
    this._handlers = [];
    this._inflight = 0; // processor calls running in JS
    this._idle = null; // resolves when _inflight drops to 0 (close waits)
    this._h = native.open(queue,
      (outs) => this._onSettled(outs),
      (missed, events) => this._onEvents(missed, events),
      (calls) => this._onCalls(calls),
      options.rawResults === true);
    // Processor results waiting to be reported: parallel arrays, flushed
    // once per turn of the event loop in one native call.
    this._tickets = [];
    this._kinds = [];
    this._texts = [];
    this._flushQueued = false;
    this._flush = () => this._flushReplies();
  }

  // Attaches as a producer now (otherwise the first submit/status/cancel
  // does). Rejects with the reason, e.g. AGENT_UNAVAILABLE.
  async connect() {
    this._producer();
  }

  _producer() {
    if (this._closed) throw closedError();
    if (!this._connected) {
      native.connect(this._h);
      this._connected = true;
    }
    return this._h;
  }

  // The caller: the options' userId/admin, or a per-call `as` (a server
  // acting for its authenticated users).
  _user(as) {
    const userId = as && as.userId !== undefined ? as.userId : this.userId;
    if (typeof userId !== 'string') {
      throw codedError('INVALID_REQUEST', 'no userId: give one in the options or per call');
    }
    return userId;
  }

  _admin(as) {
    return as && as.admin !== undefined ? as.admin === true : this.admin;
  }

  /**
   * Submits a request. Never blocks the event loop: the submit is tried at
   * once, and only when the queue is full does it wait for room (at most
   * the agent's rope_drop_timeout_ms) on a thread of Node's pool.
   * `as`: `{ userId?, admin?, forget? }`; with `forget: true` nobody will
   * ask for the outcome (fire and forget): it is drained natively and never
   * crosses into JavaScript, and `result()` answers NOT_FOUND for it.
   */
  async submit(request = {}, as = undefined) {
    const h = this._producer();
    if (request === null || typeof request !== 'object') {
      throw codedError('INVALID_REQUEST', 'a request is an object');
    }
    const req = {
      type: request.type,
      userId: this._user(as),
      mode: request.mode,
      priority: request.priority,
      payload: payloadOf(request.payload),
      idempotencyKey: request.idempotencyKey,
      metadata: objectText(request.metadata, 'metadata'),
    };
    const forget = as !== undefined && as !== null && as.forget === true;
    const res = native.trySubmit(h, req, forget);
    if (res !== null) return res;
    return native.submitWait(h, req, forget);
  }

  /**
   * Submits many requests in one crossing (one ring claim per band, one
   * wake-up of the agent), like BullMQ's addBulk. Resolves to one entry per
   * request, in order, shaped as Promise.allSettled's: `{ status:
   * 'fulfilled', value }` with submit's answer, or `{ status: 'rejected',
   * reason }` with the error that request alone met (a refused request
   * fails no other). Requests that find the queue full wait for room one by
   * one, as submit does. `as` as for submit (`forget` included).
   */
  async submitMany(requests, as = undefined) {
    const h = this._producer();
    if (!Array.isArray(requests)) throw codedError('INVALID_REQUEST', 'requests is an array');
    const forget = as !== undefined && as !== null && as.forget === true;
    const userId = this._user(as);
    const out = new Array(requests.length);
    const reqs = [];
    const at = [];
    for (let i = 0; i < requests.length; i++) {
      const request = requests[i];
      try {
        if (request === null || typeof request !== 'object') {
          throw codedError('INVALID_REQUEST', 'a request is an object');
        }
        reqs.push({
          type: request.type,
          userId,
          mode: request.mode,
          priority: request.priority,
          payload: payloadOf(request.payload),
          idempotencyKey: request.idempotencyKey,
          metadata: objectText(request.metadata, 'metadata'),
        });
        at.push(i);
      } catch (e) {
        out[i] = { status: 'rejected', reason: e };
      }
    }
    const answers = native.trySubmitMany(h, reqs, forget);
    const full = [];
    for (let k = 0; k < answers.length; k++) {
      const [ok, value] = answers[k];
      if (ok) out[at[k]] = { status: 'fulfilled', value };
      else if (value.code === 'QUEUE_FULL') full.push(k);
      else out[at[k]] = { status: 'rejected', reason: value };
    }
    // No room for these: each waits for room as submit does, in order.
    for (const k of full) {
      try {
        out[at[k]] = { status: 'fulfilled', value: await native.submitWait(h, reqs[k], forget) };
      } catch (e) {
        out[at[k]] = { status: 'rejected', reason: e };
      }
    }
    return out;
  }

  // The outcome of a request this PerformanceQueue submitted.
  result(requestId) {
    if (this._closed) return Promise.reject(closedError());
    if (typeof requestId !== 'string') {
      return Promise.reject(codedError('INVALID_REQUEST', 'a request id is 16 hex digits'));
    }
    const done = this._outcomes.get(requestId);
    if (done !== undefined) return Promise.resolve(done);
    let known;
    try {
      known = this._connected && native.tracked(this._h, requestId);
    } catch (e) {
      return Promise.reject(e);
    }
    if (!known) {
      return Promise.reject(codedError('NOT_FOUND',
        'no outcome for this request here: not submitted by this PerformanceQueue, ' +
        'or its outcome left the cache'));
    }
    return new Promise((resolve, reject) => {
      let list = this._waiters.get(requestId);
      if (list === undefined) this._waiters.set(requestId, (list = []));
      list.push({ resolve, reject });
      if (this._waiting++ === 0) native.awaiting(this._h, true);
    });
  }

  async status(requestId, as = undefined) {
    return native.status(this._producer(), requestId, this._user(as), this._admin(as));
  }

  // Alias, as the seed's service names it.
  async getStatus(requestId, as = undefined) {
    return this.status(requestId, as);
  }

  async cancel(requestId, as = undefined) {
    native.cancel(this._producer(), requestId, this._user(as), this._admin(as));
  }

  _onSettled(outs) {
    for (const o of outs) {
      const outcome = {
        requestId: o.requestId,
        status: o.status,
        // rawResults: a Buffer, as the processor's bytes; else parsed JSON.
        result: o.status === 'completed'
          ? (isBytes(o.text) ? o.text : (parseText(o.text) ?? null)) : null,
        attempts: o.attempts,
        waitTimeMs: o.waitTimeMs,
        processingTimeMs: o.processingTimeMs,
      };
      if (o.error !== undefined) outcome.error = o.error;
      if (o.status !== 'completed' && o.text !== '') outcome.message = o.text;
      this._outcomes.set(o.requestId, outcome);
      if (this._outcomes.size > this._outcomeCacheSize) {
        this._outcomes.delete(this._outcomes.keys().next().value);
      }
      const list = this._waiters.get(o.requestId);
      if (list !== undefined) {
        this._waiters.delete(o.requestId);
        this._waiting -= list.length;
        for (const w of list) w.resolve(outcome);
      }
    }
    if (this._waiting === 0 && !this._closed) native.awaiting(this._h, false);
  }

  // ------------------------------------------------------------- events

  on(eventName, listener) {
    if (this._closed) throw closedError();
    if (!EVENT_NAMES.includes(eventName)) {
      const e = new TypeError(`unknown event name; one of: ${EVENT_NAMES.join(', ')}`);
      e.code = 'ERR_INVALID_ARG_VALUE';
      throw e;
    }
    if (typeof listener !== 'function') {
      const e = new TypeError('listener must be a function');
      e.code = 'ERR_INVALID_ARG_TYPE';
      throw e;
    }
    this._emitter.on(eventName, listener);
    this._updateListening();
    return this;
  }

  once(eventName, listener) {
    const wrapped = (ev) => {
      this.off(eventName, wrapped);
      listener(ev);
    };
    wrapped.listener = listener;
    return this.on(eventName, wrapped);
  }

  off(eventName, listener) {
    const list = this._emitter.rawListeners(eventName);
    const found = list.find((l) => l === listener || l.listener === listener);
    if (found !== undefined) this._emitter.removeListener(eventName, found);
    this._updateListening();
    return this;
  }

  removeAllListeners(eventName) {
    if (eventName === undefined) this._emitter.removeAllListeners();
    else this._emitter.removeAllListeners(eventName);
    this._updateListening();
    return this;
  }

  _updateListening() {
    const want = !this._closed &&
      EVENT_NAMES.some((n) => this._emitter.listenerCount(n) > 0);
    if (want !== this._listening) {
      native.events(this._h, want);  // turning on attaches: AGENT_UNAVAILABLE throws here
      this._listening = want;
    }
  }

  _onEvents(missed, events) {
    if (missed > 0) {
      const m = { event: 'events.missed', missed };
      this._emitter.emit('events.missed', m);
      this._emitter.emit('*', m);
    }
    for (const ev of events) {
      this._emitter.emit(ev.event, ev);
      this._emitter.emit('*', ev);
    }
  }

  // ------------------------------------------------------------- workers

  registerProcessor(type, processor, options = {}) {
    this._register(type, processor, false, options);
  }

  registerBatchProcessor(type, processor, options = {}) {
    this._register(type, processor, true, options);
  }

  _register(type, fn, batch, options) {
    if (this._closed) throw closedError();
    if (typeof fn !== 'function') {
      const e = new TypeError('processor must be a function');
      e.code = 'ERR_INVALID_ARG_TYPE';
      throw e;
    }
    const concurrency = options.concurrency ?? 1;
    const id = this._handlers.length;
    native.addProcessor(this._h, type, batch, concurrency, id, options.raw === true);
    this._handlers.push({ fn, batch });
  }

  // The dispatches the take thread started since the last call: each
  // [handlerId, batch, items]. Every item is reported exactly once.
  _onCalls(calls) {
    for (const [handler, batch, items] of calls) {
      const h = handler === undefined ? undefined : this._handlers[handler];
      if (this._closed || h === undefined) {
        // Dispatched while close() lets the calls in progress finish, or
        // of a type nobody here serves: the attempt fails and is retried.
        const why = this._closed ? 'worker closing: the attempt was not started'
          : 'no processor registered for this type in this worker';
        for (const item of items) this._reply(item.ticket, 1, why);
        continue;
      }
      this._inflight++;
      let run;
      if (batch) {
        const jobs = items.map(jobOf);
        run = Promise.resolve()
          .then(() => h.fn(jobs))
          .then((results) => {
            if (!Array.isArray(results) || results.length !== jobs.length) {
              const r = [1, 'batch processor must return one result per item'];
              return jobs.map(() => r);
            }
            return results.map((v) => (v instanceof Error ? errorReply(v) : replyOf(v)));
          }, (err) => jobs.map(() => errorReply(err)));
      } else {
        // One call per attempt (a dispatch for a single processor holds one).
        run = Promise.all(items.map((item) => {
          const job = jobOf(item);
          return Promise.resolve()
            .then(() => h.fn(job.payload, job.ctx))
            .then((v) => replyOf(v), (err) => errorReply(err));
        }));
      }
      run.then((replies) => {
        for (let i = 0; i < items.length; i++) {
          const [kind, text] = replies[i];
          this._reply(items[i].ticket, kind, text);
        }
      }).catch(() => {
        for (const item of items) this._reply(item.ticket, 1, 'processor reply failed');
      }).finally(() => {
        if (--this._inflight === 0 && this._idle !== null) this._idle();
      });
    }
  }

  _reply(ticket, kind, text) {
    this._tickets.push(ticket);
    this._kinds.push(kind);
    this._texts.push(text);
    if (!this._flushQueued) {
      this._flushQueued = true;
      setImmediate(this._flush);
    }
  }

  _flushReplies() {
    this._flushQueued = false;
    if (this._tickets.length === 0) return;
    const tickets = this._tickets;
    const kinds = this._kinds;
    const texts = this._texts;
    this._tickets = [];
    this._kinds = [];
    this._texts = [];
    native.report(this._h, tickets, kinds, texts);
  }

  // ------------------------------------------------------------- close

  /**
   * Stops the workers (a processor call in progress may finish within
   * closeTimeoutMs; after that it is abandoned and its attempt fails and is
   * retried), rejects pending result() promises with ERR_PERFQ_CLOSED,
   * stops the native threads and releases the producer.
   */
  close() {
    if (this._closing !== null) return this._closing;
    this._closed = true;
    // Workers take no more dispatches (those not started go back to the
    // agent without costing an attempt) and waiting submits give up.
    native.beginClose(this._h);
    for (const list of this._waiters.values()) {
      for (const w of list) w.reject(closedError());
    }
    this._waiters.clear();
    this._waiting = 0;
    this._emitter.removeAllListeners();
    this._listening = false;  // the native side stops with everything else
    this._closing = (async () => {
      if (this._inflight > 0) {
        let timer;
        await Promise.race([
          new Promise((resolve) => { this._idle = resolve; }),
          new Promise((resolve) => { timer = setTimeout(resolve, this._closeTimeoutMs); }),
        ]);
        clearTimeout(timer);
      }
      // What finished is reported before the worker leaves; what did not
      // is taken back by the agent (WORKER_DIED, retried).
      this._flushReplies();
      await native.close(this._h);
      this._outcomes.clear();
    })();
    return this._closing;
  }
}

module.exports = { PerformanceQueue, PermanentError, EVENT_NAMES };
