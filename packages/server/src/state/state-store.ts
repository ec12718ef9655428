/**
 * The state store holds what may be lost: rate-limit counters, short caches, denylist
 * mirrors and revocation pub/sub. PostgreSQL stays the system of record.
 * Two implementations: in-memory (one process) and Redis (many nodes).
 */
export interface CounterValue {
  /** Value after the increment. */
  value: number;
  /** Milliseconds until the counter expires. */
  ttlMs: number;
}

export type MessageHandler = (message: string) => void;

export interface StateStore {
  readonly kind: 'memory' | 'redis';
  /** Atomically add `by` (default 1) to a counter and read it back; the TTL is set when the counter is created. */
  increment(key: string, ttlMs: number, by?: number): Promise<CounterValue>;
  get(key: string): Promise<string | null>;
  set(key: string, value: string, ttlMs: number): Promise<void>;
  /** Set only when the key is absent; true when this call set it. */
  setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean>;
  delete(key: string): Promise<void>;
  /** Remaining lifetime in ms, or null when the key does not exist. */
  ttl(key: string): Promise<number | null>;
  publish(channel: string, message: string): Promise<void>;
  /** Resolves once the subscription is active; the returned function unsubscribes. */
  subscribe(channel: string, handler: MessageHandler): Promise<() => Promise<void>>;
  /** Throws DependencyUnavailableError when the backing service cannot be reached (as every method does). */
  ping(): Promise<void>;
  close(): Promise<void>;
}
