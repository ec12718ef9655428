import { createRequire } from 'node:module';
import type { Cluster, ClusterNode, Redis, RedisOptions } from 'ioredis';
import { DependencyUnavailableError, StartupError } from '../errors.ts';
import type { CounterValue, MessageHandler, StateStore } from './state-store.ts';

type Ioredis = typeof import('ioredis');
let ioredisModule: Ioredis | undefined;

/**
 * ioredis and its dependencies (~60 modules) load with the first Redis store, not with this
 * module: a node on the in-memory store would only carry their code. Synchronous (ioredis is
 * CommonJS), so the store still connects from its constructor.
 */
function ioredis(): Ioredis {
  ioredisModule ??= createRequire(import.meta.url)('ioredis') as Ioredis;
  return ioredisModule;
}

export interface RedisStateStoreOptions {
  /** Prepended to every key and pub/sub channel, so several deployments can share one Redis. Default `gh:`. */
  keyPrefix?: string;
  /** Receives ioredis connection errors. Default: ignored, since every command reports them itself. */
  onConnectionError?: (error: Error) => void;
  /** Receives what a message handler throws (or rejects with). Default: a process warning. */
  onHandlerError?: (error: unknown, channel: string) => void;
}

type Client = Redis | Cluster;

/** Short enough that a request waiting on a dead Redis fails in about a second. */
const CONNECT_TIMEOUT_MS = 1000;
const COMMAND_TIMEOUT_MS = 1000;
const QUIT_TIMEOUT_MS = 2000;

/** Keeps reconnecting forever, so the store recovers by itself when Redis comes back. */
export function reconnectDelay(attempt: number): number {
  return Math.min(attempt * 100, 2000);
}

/**
 * INCRBY and read back in one round trip. The TTL is set only when the key has none (it was
 * just created, or was written without one), so later increments never extend the window.
 */
const INCREMENT_SCRIPT = `
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {value, ttl}
`;

interface IncrementCommand {
  gatehouseIncrement(key: string, by: number, ttlMs: number): Promise<[number, number]>;
}

interface Subscription {
  handler: MessageHandler;
}

interface ChannelState {
  subscriptions: Set<Subscription>;
  /** Settles when Redis has acknowledged SUBSCRIBE. */
  subscribed: Promise<unknown>;
}

/** Error codes of a reply that mean "Redis cannot serve now", not "this command is wrong". */
const UNAVAILABLE_REPLIES = /^(LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|READONLY|NOAUTH|WRONGPASS)\b/;

export class RedisStateStore implements StateStore {
  readonly kind = 'redis';
  readonly keyPrefix: string;
  #client: Client;
  #subscriber: Client | undefined;
  #channels = new Map<string, ChannelState>();
  #onConnectionError: (error: Error) => void;
  #onHandlerError: (error: unknown, channel: string) => void;
  #closed = false;

  /**
   * Connects in the background and never throws for an unreachable Redis: commands report that.
   * Throws StartupError for a malformed URL.
   */
  constructor(url: string, options: RedisStateStoreOptions = {}) {
    this.keyPrefix = options.keyPrefix ?? 'gh:';
    this.#onConnectionError = options.onConnectionError ?? (() => {});
    this.#onHandlerError = options.onHandlerError ?? warnHandlerError;
    this.#client = connect(url);
    // Without a listener, an 'error' event would crash the process.
    this.#client.on('error', (error: Error) => this.#onConnectionError(error));
    this.#client.defineCommand('gatehouseIncrement', { numberOfKeys: 1, lua: INCREMENT_SCRIPT });
  }

  async increment(key: string, ttlMs: number, by = 1): Promise<CounterValue> {
    checkTtl(ttlMs);
    if (!Number.isSafeInteger(by)) throw new RangeError(`increment: by must be an integer, got ${by}`);
    const client = this.#client as Client & IncrementCommand;
    const [value, pttl] = await this.#run(this.#client, () =>
      client.gatehouseIncrement(this.keyPrefix + key, by, ttlMs),
    );
    return { value, ttlMs: pttl };
  }

  async get(key: string): Promise<string | null> {
    return this.#run(this.#client, () => this.#client.get(this.keyPrefix + key));
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    checkTtl(ttlMs);
    await this.#run(this.#client, () => this.#client.set(this.keyPrefix + key, value, 'PX', ttlMs));
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    checkTtl(ttlMs);
    const reply = await this.#run(this.#client, () =>
      this.#client.set(this.keyPrefix + key, value, 'PX', ttlMs, 'NX'),
    );
    return reply === 'OK';
  }

  async delete(key: string): Promise<void> {
    await this.#run(this.#client, () => this.#client.del(this.keyPrefix + key));
  }

  /** Infinity for a key without expiry, which only a writer other than this store can create. */
  async ttl(key: string): Promise<number | null> {
    const pttl = await this.#run(this.#client, () => this.#client.pttl(this.keyPrefix + key));
    if (pttl === -2) return null;
    return pttl === -1 ? Number.POSITIVE_INFINITY : pttl;
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.#run(this.#client, () => this.#client.publish(this.keyPrefix + channel, message));
  }

  async subscribe(channel: string, handler: MessageHandler): Promise<() => Promise<void>> {
    // Would otherwise open a fresh subscriber connection that nothing closes.
    if (this.#closed) {
      throw new DependencyUnavailableError('state store', { cause: new Error('The store is closed') });
    }
    const subscriber = this.#subscriberClient();
    const name = this.keyPrefix + channel;
    let state = this.#channels.get(name);
    if (!state) {
      state = {
        subscriptions: new Set(),
        subscribed: this.#run(subscriber, () => subscriber.subscribe(name)),
      };
      this.#channels.set(name, state);
    }
    // Registered before the acknowledgement, so a concurrent last unsubscribe cannot tear the
    // channel down under a caller that is still waiting.
    const subscription: Subscription = { handler };
    const { subscriptions } = state;
    subscriptions.add(subscription);
    const unsubscribe = async (): Promise<void> => {
      if (!subscriptions.delete(subscription) || subscriptions.size > 0) return;
      if (this.#channels.get(name) !== state) return;
      this.#channels.delete(name);
      if (this.#closed) return;
      // Delivery has already stopped here. If Redis is unreachable, the server-side subscription
      // outlives us, and its messages are dropped in #dispatch: nothing for the caller to retry.
      await this.#run(subscriber, () => subscriber.unsubscribe(name)).catch(() => {});
    };
    try {
      await state.subscribed;
    } catch (error) {
      // Nothing was subscribed; forget the channel so the next call tries again.
      subscriptions.delete(subscription);
      if (subscriptions.size === 0 && this.#channels.get(name) === state) this.#channels.delete(name);
      throw error;
    }
    return unsubscribe;
  }

  async ping(): Promise<void> {
    await this.#run(this.#client, () => this.#client.ping());
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#channels.clear();
    await Promise.all([quit(this.#client), this.#subscriber ? quit(this.#subscriber) : undefined]);
  }

  /**
   * A second connection: under RESP2 a subscribed connection cannot run other commands, and
   * ioredis re-subscribes it on its own after a reconnect (autoResubscribe).
   */
  #subscriberClient(): Client {
    if (this.#subscriber) return this.#subscriber;
    // Both branches are the same call: the narrowing only picks which overload TypeScript checks.
    const subscriber =
      this.#client instanceof ioredis().Cluster ? this.#client.duplicate() : this.#client.duplicate();
    subscriber.on('error', (error: Error) => this.#onConnectionError(error));
    subscriber.on('message', (channel: string, message: string) => this.#dispatch(channel, message));
    this.#subscriber = subscriber;
    return subscriber;
  }

  #dispatch(name: string, message: string): void {
    const state = this.#channels.get(name);
    if (!state) return;
    const channel = name.slice(this.keyPrefix.length);
    for (const subscription of [...state.subscriptions]) {
      try {
        const result: unknown = subscription.handler(message);
        // An async handler that rejects would otherwise become an unhandled rejection.
        if (result instanceof Promise) result.catch((error: unknown) => this.#onHandlerError(error, channel));
      } catch (error) {
        this.#onHandlerError(error, channel);
      }
    }
  }

  async #run<T>(client: Client, command: () => Promise<T>): Promise<T> {
    await untilConnectAttemptSettles(client);
    try {
      return await command();
    } catch (error) {
      throw isUnavailable(error) ? new DependencyUnavailableError('state store', { cause: error }) : error;
    }
  }
}

/**
 * `redis://host:port[/db]` or `rediss://...` (TLS) is one server; several comma-separated hosts
 * (`redis://h1:7000,h2:7001`) are seed nodes of a Redis Cluster.
 */
export function createRedisStateStore(url: string, options?: RedisStateStoreOptions): RedisStateStore {
  return new RedisStateStore(url, options);
}

function connect(url: string): Client {
  const target = parseRedisUrl(url);
  const failFast = {
    connectTimeout: CONNECT_TIMEOUT_MS,
    commandTimeout: COMMAND_TIMEOUT_MS,
    // Commands in flight when the connection drops fail after one reconnect attempt instead of
    // waiting for Redis to return.
    maxRetriesPerRequest: 1,
  } satisfies RedisOptions;
  if (!target.cluster) {
    return new (ioredis().Redis)(url, {
      ...failFast,
      enableOfflineQueue: false,
      retryStrategy: reconnectDelay,
    });
  }
  return new (ioredis().Cluster)(target.nodes, {
    enableOfflineQueue: false,
    clusterRetryStrategy: reconnectDelay,
    redisOptions: {
      ...failFast,
      ...(target.username ? { username: target.username } : {}),
      ...(target.password ? { password: target.password } : {}),
      ...(target.tls ? { tls: {} } : {}),
    },
  });
}

export interface ParsedRedisUrl {
  cluster: boolean;
  nodes: ClusterNode[];
  tls: boolean;
  username: string | undefined;
  password: string | undefined;
}

/** Throws StartupError for a URL that is not redis:// or rediss://. The message never echoes the URL (it may hold a password). */
export function parseRedisUrl(url: string): ParsedRedisUrl {
  const match = /^(rediss?):\/\/(?:([^@/]*)@)?([^/?#]+)(\/[^?#]*)?(\?[^#]*)?$/.exec(url.trim());
  const [, scheme, auth, hostList, path] = match ?? [];
  if (!scheme || !hostList) {
    throw new StartupError(
      'The Redis URL must look like redis://host:port, rediss://host:port or redis://h1:p1,h2:p2',
    );
  }
  const nodes = hostList.split(',').map((host) => parseHost(host.trim()));
  if (nodes.length > 1 && path && !/^\/0?$/.test(path)) {
    throw new StartupError(
      'Redis Cluster has only database 0; remove the database number from the Redis URL',
    );
  }
  let username: string | undefined;
  let password: string | undefined;
  if (auth) {
    const colon = auth.indexOf(':');
    username = decodeURIComponent(colon === -1 ? auth : auth.slice(0, colon)) || undefined;
    password = colon === -1 ? undefined : decodeURIComponent(auth.slice(colon + 1)) || undefined;
  }
  return { cluster: nodes.length > 1, nodes, tls: scheme === 'rediss', username, password };
}

function parseHost(host: string): ClusterNode {
  const match = /^(\[[^\]]+\]|[^:[\]]+)(?::(\d+))?$/.exec(host);
  const [, name, port] = match ?? [];
  if (!name) throw new StartupError('The Redis URL has an empty or malformed host');
  return { host: name.replace(/^\[|\]$/g, ''), port: port ? Number(port) : 6379 };
}

/**
 * ioredis rejects commands outright while not connected (enableOfflineQueue: false), which
 * would fail every call made right after start-up. So wait for a connect attempt in progress,
 * bounded by the connect timeout; while reconnecting between attempts, fail at once.
 */
async function untilConnectAttemptSettles(client: Client): Promise<void> {
  if (client.status !== 'connecting' && client.status !== 'connect') return;
  await new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      client.off('ready', done);
      client.off('close', done);
      client.off('end', done);
      resolve();
    };
    const timer = setTimeout(done, CONNECT_TIMEOUT_MS);
    client.once('ready', done);
    client.once('close', done);
    client.once('end', done);
  });
}

/**
 * Errors that ioredis raises itself (socket errors, "Connection is closed.", "Stream isn't
 * writeable", MaxRetriesPerRequestError, "Command timed out", cluster routing failures) are all
 * about reaching Redis. A reply error is Redis answering, and only a few answers mean it cannot
 * serve; the rest (WRONGTYPE, "not an integer", ...) are bugs that must surface as they are.
 */
function isUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error instanceof ioredis().ReplyError) return UNAVAILABLE_REPLIES.test(error.message);
  return true;
}

async function quit(client: Client): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.quit(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('quit timed out')), QUIT_TIMEOUT_MS);
      }),
    ]);
  } catch {
    // Redis is unreachable (or slow): drop the socket and stop reconnecting.
    client.disconnect();
  } finally {
    clearTimeout(timer);
  }
}

function checkTtl(ttlMs: number): void {
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) {
    throw new RangeError(`ttlMs must be a positive integer, got ${ttlMs}`);
  }
}

function warnHandlerError(error: unknown, channel: string): void {
  process.emitWarning(`State store message handler for channel "${channel}" failed: ${String(error)}`);
}
