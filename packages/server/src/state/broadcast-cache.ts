import type { StateStore } from './state-store.ts';

export interface BroadcastCacheOptions {
  /** How long an entry may be served without re-reading it; 0 disables the cache. */
  ttlMs: number;
  /** Entries kept at most; the oldest goes first. */
  limit?: number;
}

interface Entry<V> {
  value: V;
  freshUntil: number;
}

/** The message on the channel: the keys to drop, or null for all of them. */
interface Invalidation {
  keys: string[] | null;
}

/**
 * A per-process read cache for data every authenticated request needs (a user's roles, the
 * profile behind /v1/me), kept coherent across nodes: a change drops the keys here at once and
 * is published on the state store, so every other process drops them within milliseconds. The
 * TTL bounds staleness should a message be lost (the same bound as the session cache).
 *
 * A read that started before an invalidation does not store its (possibly old) result.
 */
export class BroadcastCache<V> {
  private readonly state: StateStore;
  private readonly channel: string;
  private readonly ttlMs: number;
  private readonly limit: number;
  private readonly entries = new Map<string, Entry<V>>();
  /** Bumped by every invalidation; a load stores its result only if it saw the current one. */
  private generation = 0;
  private unsubscribe: (() => Promise<void>) | undefined;

  constructor(state: StateStore, channel: string, options: BroadcastCacheOptions) {
    this.state = state;
    this.channel = channel;
    this.ttlMs = options.ttlMs;
    this.limit = options.limit ?? 50_000;
  }

  async start(): Promise<void> {
    this.unsubscribe = await this.state.subscribe(this.channel, (message) => {
      try {
        const { keys } = JSON.parse(message) as Invalidation;
        this.drop(Array.isArray(keys) ? keys : null);
      } catch {
        this.drop(null); // unreadable: safest is to forget everything
      }
    });
  }

  async stop(): Promise<void> {
    await this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  /** The cached value, or `load()`'s (cached when `keep` accepts it; entries `keep` refuses are reloaded). */
  async get(key: string, load: () => Promise<V>, keep: (value: V) => boolean = () => true): Promise<V> {
    const now = Date.now();
    const entry = this.entries.get(key);
    if (entry && entry.freshUntil > now && keep(entry.value)) return entry.value;
    const generation = this.generation;
    const value = await load();
    if (this.ttlMs > 0 && generation === this.generation && keep(value)) {
      if (!entry && this.entries.size >= this.limit) {
        this.entries.delete(this.entries.keys().next().value as string);
      }
      this.entries.set(key, { value, freshUntil: now + this.ttlMs });
    }
    return value;
  }

  /** Drops `keys` (null: everything) here and, best effort, in every other process. */
  async invalidate(keys: string[] | null): Promise<void> {
    this.drop(keys);
    const message: Invalidation = { keys };
    // Best effort: the TTL bounds the staleness elsewhere if the message is lost.
    await this.state.publish(this.channel, JSON.stringify(message)).catch(() => {});
  }

  private drop(keys: string[] | null): void {
    this.generation++;
    if (keys === null) this.entries.clear();
    else for (const key of keys) this.entries.delete(key);
  }
}
