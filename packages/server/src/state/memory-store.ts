import { DependencyUnavailableError } from '../errors.ts';
import type { CounterValue, MessageHandler, StateStore } from './state-store.ts';

export interface MemoryStateStoreOptions {
  /** How often expired entries are purged; reads also drop them lazily. Default 30 s. */
  sweepIntervalMs?: number;
  /** Receives what a message handler throws (or rejects with). Default: a process warning. */
  onHandlerError?: (error: unknown, channel: string) => void;
}

interface Entry {
  value: string;
  /** On the performance.now() clock, which wall-clock changes do not move. */
  expiresAt: number;
}

interface Subscription {
  handler: MessageHandler;
}

/** One process only: what it holds dies with the process and is not shared with other nodes. */
export class MemoryStateStore implements StateStore {
  readonly kind = 'memory';
  #entries = new Map<string, Entry>();
  #channels = new Map<string, Set<Subscription>>();
  #sweepTimer: NodeJS.Timeout;
  #onHandlerError: (error: unknown, channel: string) => void;
  #closed = false;

  constructor(options: MemoryStateStoreOptions = {}) {
    this.#onHandlerError = options.onHandlerError ?? warnHandlerError;
    this.#sweepTimer = setInterval(() => this.#sweep(), options.sweepIntervalMs ?? 30_000);
    // The sweep is housekeeping; it must not keep the process alive.
    this.#sweepTimer.unref();
  }

  /** Entries held, including expired ones not yet swept. For tests and metrics. */
  get size(): number {
    return this.#entries.size;
  }

  async increment(key: string, ttlMs: number, by = 1): Promise<CounterValue> {
    this.#checkOpen();
    checkTtl(ttlMs);
    if (!Number.isSafeInteger(by)) throw new RangeError(`increment: by must be an integer, got ${by}`);
    const now = performance.now();
    const entry = this.#live(key, now);
    if (!entry) {
      this.#entries.set(key, { value: String(by), expiresAt: now + ttlMs });
      return { value: by, ttlMs };
    }
    // Same rule as Redis INCRBY: only a value that is an integer string can be incremented.
    const current = /^-?\d+$/.test(entry.value) ? Number(entry.value) : Number.NaN;
    const next = current + by;
    if (!Number.isSafeInteger(current) || !Number.isSafeInteger(next)) {
      throw new Error(`increment: value of ${key} is not an integer or out of range`);
    }
    entry.value = String(next);
    return { value: next, ttlMs: remaining(entry, now) };
  }

  async get(key: string): Promise<string | null> {
    this.#checkOpen();
    return this.#live(key, performance.now())?.value ?? null;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    this.#checkOpen();
    checkTtl(ttlMs);
    this.#entries.set(key, { value, expiresAt: performance.now() + ttlMs });
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    this.#checkOpen();
    checkTtl(ttlMs);
    const now = performance.now();
    if (this.#live(key, now)) return false;
    this.#entries.set(key, { value, expiresAt: now + ttlMs });
    return true;
  }

  async delete(key: string): Promise<void> {
    this.#checkOpen();
    this.#entries.delete(key);
  }

  async ttl(key: string): Promise<number | null> {
    this.#checkOpen();
    const now = performance.now();
    const entry = this.#live(key, now);
    return entry ? remaining(entry, now) : null;
  }

  async publish(channel: string, message: string): Promise<void> {
    this.#checkOpen();
    const subscriptions = this.#channels.get(channel);
    if (!subscriptions) return;
    // Snapshot the receivers now (as Redis does at PUBLISH) and deliver on a later turn, never
    // inside the publisher's call stack.
    const receivers = [...subscriptions];
    setImmediate(() => {
      for (const subscription of receivers) {
        // Unsubscribed after the publish: deliver nothing, as the interface promises.
        if (subscriptions.has(subscription)) this.#deliver(subscription, channel, message);
      }
    });
  }

  async subscribe(channel: string, handler: MessageHandler): Promise<() => Promise<void>> {
    this.#checkOpen();
    let subscriptions = this.#channels.get(channel);
    if (!subscriptions) {
      subscriptions = new Set();
      this.#channels.set(channel, subscriptions);
    }
    // A fresh object per call, so the same function subscribed twice is two subscriptions.
    const subscription: Subscription = { handler };
    subscriptions.add(subscription);
    const set = subscriptions;
    return async () => {
      set.delete(subscription);
      if (set.size === 0 && this.#channels.get(channel) === set) this.#channels.delete(channel);
    };
  }

  async ping(): Promise<void> {
    this.#checkOpen();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweepTimer);
    this.#entries.clear();
    for (const subscriptions of this.#channels.values()) subscriptions.clear();
    this.#channels.clear();
  }

  #checkOpen(): void {
    // Same outcome as a closed Redis connection, so callers handle one error for both stores.
    if (this.#closed) {
      throw new DependencyUnavailableError('state store', { cause: new Error('The store is closed') });
    }
  }

  #live(key: string, now: number): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry && entry.expiresAt <= now) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  #sweep(): void {
    const now = performance.now();
    for (const [key, entry] of this.#entries) {
      if (entry.expiresAt <= now) this.#entries.delete(key);
    }
  }

  #deliver(subscription: Subscription, channel: string, message: string): void {
    try {
      const result: unknown = subscription.handler(message);
      // An async handler that rejects would otherwise become an unhandled rejection.
      if (result instanceof Promise) result.catch((error: unknown) => this.#onHandlerError(error, channel));
    } catch (error) {
      this.#onHandlerError(error, channel);
    }
  }
}

function remaining(entry: Entry, now: number): number {
  return Math.ceil(entry.expiresAt - now);
}

function checkTtl(ttlMs: number): void {
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) {
    throw new RangeError(`ttlMs must be a positive integer, got ${ttlMs}`);
  }
}

function warnHandlerError(error: unknown, channel: string): void {
  process.emitWarning(`State store message handler for channel "${channel}" failed: ${String(error)}`);
}
