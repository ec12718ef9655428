import { MemoryStateStore } from './memory-store.ts';
import { createRedisStateStore } from './redis-store.ts';
import type { StateStore } from './state-store.ts';

export type { MemoryStateStoreOptions } from './memory-store.ts';
export type { RedisStateStoreOptions } from './redis-store.ts';
export type { CounterValue, MessageHandler, StateStore } from './state-store.ts';
export { createRedisStateStore, MemoryStateStore };

/**
 * Redis when a URL is configured (state shared by every node), otherwise in-process memory,
 * which is only correct for a single node. Throws StartupError for a malformed URL; an
 * unreachable Redis does not throw here, its commands fail until it is back.
 */
export function createStateStore(redisUrl: string | undefined, keyPrefix?: string): StateStore {
  return redisUrl ? createRedisStateStore(redisUrl, keyPrefix ? { keyPrefix } : {}) : new MemoryStateStore();
}
