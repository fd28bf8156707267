// Type-checked by test/types.test.js with tsc --noEmit: the declarations
// of index.d.ts and nest/index.d.ts describe a real usage.
import { PerformanceQueue, PermanentError, EVENT_NAMES } from '../..';
import type { Outcome, RequestEvent, StatusRecord, SubmitResponse, PerfqError } from '../..';
import { PerformanceQueueModule, PerformanceQueueService } from '../../nest';

interface Chat {
  conversationId: string;
  message: string;
}

export async function usage(): Promise<void> {
  const q = new PerformanceQueue({ queue: 'q', userId: 'alice', closeTimeoutMs: 1000 });
  const s: SubmitResponse = await q.submit<{ conversationId: string; message: string }>({
    type: 'chat.message',
    mode: 'priority',
    priority: 10,
    payload: { conversationId: '123', message: 'Hello!' },
    idempotencyKey: 'unique-key-123',
    metadata: { source: 'web' },
  });
  const o: Outcome<{ ok: boolean }> = await q.result<{ ok: boolean }>(s.requestId);
  if (o.status === 'completed' && o.result !== null) {
    const ok: boolean = o.result.ok;
    void ok;
  }
  const st: StatusRecord = await q.status(s.requestId, { userId: 'bob', admin: true });
  void st.band;
  await q.cancel(s.requestId);
  q.registerProcessor<Chat, { length: number }>('chat.message', async (payload, ctx) => {
    if (ctx.attempt > 2) throw new PermanentError('giving up');
    return { length: payload.message.length };
  }, { concurrency: 2 });
  q.registerBatchProcessor<Chat, number>('chat.batch', async (items) =>
    items.map((it) => (it.payload.message ? it.payload.message.length : new Error('empty'))));
  const onDone = (ev: RequestEvent): void => {
    const id: string = ev.requestId;
    void id;
  };
  q.on('request.completed', onDone).off('request.completed', onDone);
  q.on('events.missed', (m) => void m.missed);
  q.on('*', (ev) => void ev.event);
  const names: readonly string[] = EVENT_NAMES;
  void names;
  try {
    await q.submit({ type: 'x' });
  } catch (e) {
    const err = e as PerfqError;
    const code: string = err.code;
    const retry: number | undefined = err.retryAfterMs;
    void code;
    void retry;
  }
  await q.close();

  const mod: ReturnType<typeof PerformanceQueueModule.forRoot> = PerformanceQueueModule.forRoot({ queue: 'q', userId: 'svc' });
  void mod;
  const svc = new PerformanceQueueService({ queue: 'q' });
  const r: SubmitResponse = await svc.submit({ type: 'chat.message' }, { userId: 'carol' });
  void r;
  await svc.onModuleDestroy();
}
