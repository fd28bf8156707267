// Type declarations of perfq's Node.js binding (index.js).

export type Mode = 'fifo' | 'priority' | 'batch';
export type Status =
  | 'pending' | 'assigned' | 'processing' | 'completed' | 'failed' | 'timeout' | 'cancelled';
export type FinalStatus = 'completed' | 'failed' | 'timeout' | 'cancelled';
export type Band = 'CRITICAL' | 'HIGH' | 'NORMAL' | 'LOW';

/** The SPEC's error codes; `ERR_PERFQ_CLOSED` is the binding's own (use after close()). */
export type ErrorCode =
  | 'INVALID_REQUEST' | 'INVALID_MODE' | 'INVALID_PRIORITY' | 'QUEUE_FULL'
  | 'RATE_LIMIT_EXCEEDED' | 'NOT_FOUND' | 'UNAUTHORIZED' | 'FORBIDDEN' | 'INVALID_STATUS'
  | 'WORKER_UNAVAILABLE' | 'PROCESSING_TIMEOUT' | 'PROCESSOR_ERROR' | 'WORKER_DIED'
  | 'QUEUE_TIMEOUT' | 'CANCELLED' | 'AGENT_UNAVAILABLE' | 'SEGMENT_INVALID' | 'CONFLICT'
  | 'INTERNAL' | 'ERR_PERFQ_CLOSED';

/** Every failure the binding reports is an Error with these fields. */
export interface PerfqError extends Error {
  code: ErrorCode | string;
  /** The HTTP status the same failure answers with (absent for ERR_PERFQ_CLOSED). */
  statusCode?: number;
  /** RATE_LIMIT_EXCEEDED: when a submit may be accepted again. */
  retryAfterMs?: number;
}

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: unknown };

export interface PerformanceQueueOptions {
  /** The queue's name, as the agent was started with (--queue). */
  queue: string;
  /** The producer's identity: 1..64 bytes of [A-Za-z0-9._:@-]. Needed by submit/status/cancel. */
  userId?: string;
  /** status() and cancel() may see every user's requests. */
  admin?: boolean;
  /** Outcomes kept for result() after they arrived (default 1000, oldest dropped first). */
  outcomeCacheSize?: number;
  /** How long close() lets processor calls in progress finish (default 5000 ms). */
  closeTimeoutMs?: number;
  /** Completed results as Buffers (the processor's bytes, no JSON.parse). */
  rawResults?: boolean;
}

export interface SubmitRequest<P extends JsonObject = JsonObject> {
  /** 1..64 bytes of [A-Za-z0-9._:-]. */
  type: string;
  mode?: Mode;
  /** Integer 1..20, default 5. */
  priority?: number;
  /**
   * A JSON object (sent as JSON text), or bytes (a Buffer or Uint8Array, sent
   * as they are); at most slot_payload_bytes (4096).
   */
  payload?: P | Uint8Array;
  /** 1..128 printable ASCII characters. */
  idempotencyKey?: string;
  /** A JSON object, at most 512 bytes as JSON text. */
  metadata?: JsonObject;
}

/** As the HTTP API's POST submit answers. */
export interface SubmitResponse {
  /** 16 lower-case hex digits. */
  requestId: string;
  status: Status | 'unknown';
  mode: Mode;
  type: string;
  priority: number;
  /** ISO 8601. */
  createdAt: string;
  queuePosition: number;
  /** Present (true) when an earlier submit with the same idempotency key answered. */
  duplicate?: true;
}

/** As the HTTP API's GET status answers. */
export interface StatusRecord {
  requestId: string;
  status: Status;
  mode: Mode;
  type: string;
  priority: number;
  band: Band;
  userId: string;
  attempts: number;
  createdAt: string;
  finishedAt?: string;
  error?: ErrorCode;
}

export interface Outcome<R = unknown> {
  requestId: string;
  status: FinalStatus;
  /** The processor's return value (completed), else null. */
  result: R | null;
  /** Why it did not complete (a SPEC code). */
  error?: ErrorCode;
  /** The last processor error message, when not completed. */
  message?: string;
  attempts: number;
  waitTimeMs: number;
  processingTimeMs: number;
}

export interface ProcessorContext {
  requestId: string;
  type: string;
  userId: string;
  mode: Mode;
  priority: number;
  /** 1-based. */
  attempt: number;
  metadata?: JsonObject;
}

export type Processor<P = any, R = unknown> = (payload: P, ctx: ProcessorContext) => R | Promise<R>;
export interface BatchItem<P = any> {
  payload: P;
  ctx: ProcessorContext;
}
/** One result per item, in order; an element that is an Error fails that item. */
export type BatchProcessor<P = any, R = unknown> =
  (items: BatchItem<P>[]) => Array<R | Error> | Promise<Array<R | Error>>;

export interface ProcessorOptions {
  /**
   * Processor calls of this registration running at once (a batch call
   * counts once), as BullMQ means it: 1..100000, default 1. It costs no
   * thread and no segment client: one worker serves every registration.
   */
  concurrency?: number;
  /** Payloads as Buffers (the bytes as sent, no JSON.parse). */
  raw?: boolean;
}

export type RequestEventName =
  | 'request.submitted' | 'request.assigned' | 'request.processing' | 'request.completed'
  | 'request.failed' | 'request.timeout' | 'request.cancelled' | 'request.retrying'
  | 'request.dead_lettered';
export type QueueEventName = 'queue.full' | 'queue.empty';
export type EventName = RequestEventName | QueueEventName | 'events.missed' | '*';

/** As the agent's event feed writes them; never a payload. */
export interface RequestEvent {
  /** The event's position in the agent's ring (its SSE id). */
  id: number;
  event: RequestEventName;
  at: string;
  requestId: string;
  type: string;
  userId: string;
  status: Status;
  priority: number;
  mode: Mode;
  attempt: number;
  error?: ErrorCode;
}
export interface QueueEvent {
  id: number;
  event: QueueEventName;
  at: string;
}
export interface MissedEvent {
  event: 'events.missed';
  missed: number;
}
export type AnyEvent = RequestEvent | QueueEvent | MissedEvent;

export interface EventMap {
  'request.submitted': RequestEvent;
  'request.assigned': RequestEvent;
  'request.processing': RequestEvent;
  'request.completed': RequestEvent;
  'request.failed': RequestEvent;
  'request.timeout': RequestEvent;
  'request.cancelled': RequestEvent;
  'request.retrying': RequestEvent;
  'request.dead_lettered': RequestEvent;
  'queue.full': QueueEvent;
  'queue.empty': QueueEvent;
  'events.missed': MissedEvent;
  '*': AnyEvent;
}

export declare class PermanentError extends Error {
  constructor(message?: string, options?: { cause?: unknown });
  readonly permanent: true;
}

export declare const EVENT_NAMES: readonly EventName[];

/** Acting for another caller than the options' userId/admin (a server for its users). */
export interface CallAs {
  userId?: string;
  admin?: boolean;
}

export interface SubmitOptions extends CallAs {
  /** Fire and forget: the outcome never reaches JavaScript; result() answers NOT_FOUND. */
  forget?: boolean;
}

export declare class PerformanceQueue {
  constructor(options: PerformanceQueueOptions);
  readonly queue: string;
  userId: string | undefined;
  admin: boolean;

  /** Attaches as a producer now; otherwise the first submit/status/cancel does. */
  connect(): Promise<void>;
  submit<P extends JsonObject = JsonObject>(request: SubmitRequest<P>, as?: SubmitOptions):
    Promise<SubmitResponse>;
  /**
   * Many submits in one crossing (one ring claim per band, one agent
   * wake-up), like BullMQ's addBulk; one Promise.allSettled-shaped entry per
   * request, in order (a refused request fails no other).
   */
  submitMany<P extends JsonObject = JsonObject>(requests: SubmitRequest<P>[],
    as?: SubmitOptions): Promise<PromiseSettledResult<SubmitResponse>[]>;
  /** The outcome of a request this PerformanceQueue submitted; NOT_FOUND for any other. */
  result<R = unknown>(requestId: string): Promise<Outcome<R>>;
  status(requestId: string, as?: CallAs): Promise<StatusRecord>;
  getStatus(requestId: string, as?: CallAs): Promise<StatusRecord>;
  cancel(requestId: string, as?: CallAs): Promise<void>;

  registerProcessor<P = any, R = unknown>(type: string, processor: Processor<P, R>,
    options?: ProcessorOptions): void;
  registerBatchProcessor<P = any, R = unknown>(type: string, processor: BatchProcessor<P, R>,
    options?: ProcessorOptions): void;

  on<K extends EventName>(eventName: K, listener: (event: EventMap[K]) => void): this;
  once<K extends EventName>(eventName: K, listener: (event: EventMap[K]) => void): this;
  off<K extends EventName>(eventName: K, listener: (event: EventMap[K]) => void): this;
  removeAllListeners(eventName?: EventName): this;

  /** Stops workers, rejects pending result() with ERR_PERFQ_CLOSED, joins native threads. */
  close(): Promise<void>;
}
