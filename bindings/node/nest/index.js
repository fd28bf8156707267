'use strict';
// perfq for NestJS: PerformanceQueueModule.forRoot({ queue, userId? })
// provides PerformanceQueueService, the seed's service backed by perfq's
// PerformanceQueue (the package one directory up). Plain JavaScript: the
// Nest decorators are applied as functions.
require('reflect-metadata');
const { Module, Injectable, Inject } = require('@nestjs/common');
const { PerformanceQueue, PermanentError, EVENT_NAMES } = require('..');

const PERFQ_OPTIONS = 'PERFQ_OPTIONS';

class PerformanceQueueService {
  constructor(options) {
    this.queue = new PerformanceQueue(options);
  }

  submit(request, as) {
    return this.queue.submit(request, as);
  }

  getStatus(requestId, as) {
    return this.queue.status(requestId, as);
  }

  status(requestId, as) {
    return this.queue.status(requestId, as);
  }

  cancel(requestId, as) {
    return this.queue.cancel(requestId, as);
  }

  result(requestId) {
    return this.queue.result(requestId);
  }

  registerProcessor(type, processor, options) {
    this.queue.registerProcessor(type, processor, options);
  }

  registerBatchProcessor(type, processor, options) {
    this.queue.registerBatchProcessor(type, processor, options);
  }

  on(eventName, listener) {
    this.queue.on(eventName, listener);
    return this;
  }

  off(eventName, listener) {
    this.queue.off(eventName, listener);
    return this;
  }

  // Nest calls it on app.close() / module.close().
  onModuleDestroy() {
    return this.queue.close();
  }
}
Injectable()(PerformanceQueueService);
Inject(PERFQ_OPTIONS)(PerformanceQueueService, undefined, 0);

class PerformanceQueueModule {
  /**
   * @param {{queue: string, userId?: string, admin?: boolean, isGlobal?: boolean,
   *          outcomeCacheSize?: number, closeTimeoutMs?: number}} options
   */
  static forRoot(options) {
    const { isGlobal, ...queueOptions } = options || {};
    return {
      module: PerformanceQueueModule,
      global: isGlobal === true,
      providers: [{ provide: PERFQ_OPTIONS, useValue: queueOptions }, PerformanceQueueService],
      exports: [PerformanceQueueService],
    };
  }
}
Module({})(PerformanceQueueModule);

module.exports = {
  PerformanceQueueModule, PerformanceQueueService, PERFQ_OPTIONS, PerformanceQueue, PermanentError,
  EVENT_NAMES,
};
