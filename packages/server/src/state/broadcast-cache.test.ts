import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { BroadcastCache } from './broadcast-cache.ts';
import { MemoryStateStore } from './memory-store.ts';
import { RedisStateStore } from './redis-store.ts';
import type { StateStore } from './state-store.ts';

const REDIS_URL = process.env.REDIS_URL;

async function eventually(check: () => Promise<boolean>, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await sleep(10);
  }
}

/** Two "processes": two caches on one channel, each on its own connection when on Redis. */
function runContract(name: string, openPair: () => Promise<[StateStore, StateStore]>): void {
  const opened: StateStore[] = [];
  const open = async (): Promise<[StateStore, StateStore]> => {
    const pair = await openPair();
    opened.push(...pair);
    return pair;
  };
  after(async () => {
    for (const store of new Set(opened)) await store.close().catch(() => {});
  });
  describe(`BroadcastCache on ${name}`, () => {
    const channel = `cache-test-${randomUUID()}`;

    it('serves from memory within the TTL, reloads after it, and not at all with TTL 0', async () => {
      const [store] = await open();
      let loads = 0;
      const load = async () => ++loads;
      const cache = new BroadcastCache<number>(store, channel, { ttlMs: 80 });
      assert.equal(await cache.get('k', load), 1);
      assert.equal(await cache.get('k', load), 1);
      await sleep(120);
      assert.equal(await cache.get('k', load), 2);
      const off = new BroadcastCache<number>(store, channel, { ttlMs: 0 });
      assert.equal(await off.get('k', load), 3);
      assert.equal(await off.get('k', load), 4);
    });

    it('an invalidation drops the key here at once and in the other process shortly after', async () => {
      const [storeA, storeB] = await open();
      const a = new BroadcastCache<string>(storeA, channel, { ttlMs: 60_000 });
      const b = new BroadcastCache<string>(storeB, channel, { ttlMs: 60_000 });
      try {
        await a.start();
        await b.start();
        let version = 'v1';
        const load = async () => version;
        assert.equal(await a.get('user', load), 'v1');
        assert.equal(await b.get('user', load), 'v1');
        assert.equal(await b.get('other', load), 'v1');
        version = 'v2';
        await a.invalidate(['user']);
        assert.equal(await a.get('user', load), 'v2', 'the invalidating process re-reads at once');
        await eventually(async () => (await b.get('user', load)) === 'v2');
        assert.equal(await b.get('other', load), 'v1', 'other keys stay cached');
        version = 'v3';
        await b.invalidate(null);
        await eventually(async () => (await a.get('other', load)) === 'v3');
      } finally {
        await a.stop();
        await b.stop();
      }
    });

    it('a read that started before an invalidation does not store its old result', async () => {
      const [store] = await open();
      const cache = new BroadcastCache<string>(store, channel, { ttlMs: 60_000 });
      let release: () => void = () => {};
      const slow = cache.get('k', () => new Promise<string>((resolve) => (release = () => resolve('old'))));
      await sleep(5);
      await cache.invalidate(['k']);
      release();
      assert.equal(await slow, 'old', 'the caller still gets what it read');
      assert.equal(await cache.get('k', async () => 'new'), 'new', 'but it was not cached');
    });

    it('an entry its keep() check refuses is read again', async () => {
      const [store] = await open();
      const cache = new BroadcastCache<{ version: number }>(store, channel, { ttlMs: 60_000 });
      let current = 1;
      let loads = 0;
      const load = async () => {
        loads++;
        return { version: current };
      };
      const keep = (entry: { version: number }) => entry.version === current;
      await cache.get('k', load, keep);
      await cache.get('k', load, keep);
      assert.equal(loads, 1);
      current = 2;
      assert.equal((await cache.get('k', load, keep)).version, 2);
      assert.equal(loads, 2);
    });
  });
}

runContract('memory', async () => {
  const store = new MemoryStateStore();
  return [store, store];
});

if (REDIS_URL) {
  const keyPrefix = `gh-test:${randomUUID().slice(0, 8)}:`;
  runContract('redis', async () => [
    new RedisStateStore(REDIS_URL, { keyPrefix }),
    new RedisStateStore(REDIS_URL, { keyPrefix }),
  ]);
}
