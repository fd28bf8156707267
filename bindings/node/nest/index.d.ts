import type { DynamicModule, OnModuleDestroy } from '@nestjs/common';
import type {
  BatchProcessor, CallAs, EventMap, EventName, Outcome, PerformanceQueue,
  PerformanceQueueOptions, Processor, ProcessorOptions, StatusRecord, SubmitRequest,
  SubmitResponse, JsonObject,
} from '..';

export { PerformanceQueue, PermanentError, EVENT_NAMES } from '..';

export declare const PERFQ_OPTIONS: 'PERFQ_OPTIONS';

export interface PerformanceQueueModuleOptions extends PerformanceQueueOptions {
  /** Register the module globally (default false). */
  isGlobal?: boolean;
}

export declare class PerformanceQueueService implements OnModuleDestroy {
  constructor(options: PerformanceQueueOptions);
  readonly queue: PerformanceQueue;
  submit<P extends JsonObject = JsonObject>(request: SubmitRequest<P>, as?: CallAs):
    Promise<SubmitResponse>;
  getStatus(requestId: string, as?: CallAs): Promise<StatusRecord>;
  status(requestId: string, as?: CallAs): Promise<StatusRecord>;
  cancel(requestId: string, as?: CallAs): Promise<void>;
  result<R = unknown>(requestId: string): Promise<Outcome<R>>;
  registerProcessor<P = any, R = unknown>(type: string, processor: Processor<P, R>,
    options?: ProcessorOptions): void;
  registerBatchProcessor<P = any, R = unknown>(type: string, processor: BatchProcessor<P, R>,
    options?: ProcessorOptions): void;
  on<K extends EventName>(eventName: K, listener: (event: EventMap[K]) => void): this;
  off<K extends EventName>(eventName: K, listener: (event: EventMap[K]) => void): this;
  onModuleDestroy(): Promise<void>;
}

export declare class PerformanceQueueModule {
  static forRoot(options: PerformanceQueueModuleOptions): DynamicModule;
}
