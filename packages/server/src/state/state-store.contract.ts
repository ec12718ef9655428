import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DependencyUnavailableError } from '../errors.ts';
import type { StateStore } from './state-store.ts';

/**
 * The behaviour every StateStore must have. `makeStore` may be called several times; for a
 * shared backend every instance it returns must see the same data (like two processes would).
 * Stores are closed after the suite, then `cleanup` runs.
 */
export function runStateStoreContract(
  name: string,
  makeStore: () => Promise<StateStore>,
  cleanup?: () => Promise<void>,
): void {
  describe(`StateStore contract: ${name}`, () => {
    // Unique per run, so concurrent runs against one shared Redis never see each other's keys.
    const run = randomUUID().slice(0, 8);
    let counter = 0;
    const unique = (label: string): string => `contract:${run}:${label}:${++counter}`;
    const opened: StateStore[] = [];
    const open = async (): Promise<StateStore> => {
      const store = await makeStore();
      opened.push(store);
      return store;
    };
    let store: StateStore;

    before(async () => {
      store = await open();
    });
    after(async () => {
      await Promise.allSettled(opened.map((s) => s.close()));
      await cleanup?.();
    });

    describe('increment', () => {
      it('creates the counter with the TTL and returns increasing values', async () => {
        const key = unique('inc');
        const first = await store.increment(key, 10_000);
        assert.equal(first.value, 1);
        assertTtlNear(first.ttlMs, 10_000);
        assert.equal((await store.increment(key, 10_000)).value, 2);
        assert.equal((await store.increment(key, 10_000)).value, 3);
        assert.equal(await store.get(key), '3');
        assertTtlNear(await store.ttl(key), 10_000);
      });

      it('adds `by`, including negative amounts', async () => {
        const key = unique('by');
        assert.equal((await store.increment(key, 10_000, 5)).value, 5);
        assert.equal((await store.increment(key, 10_000, 3)).value, 8);
        assert.equal((await store.increment(key, 10_000, -2)).value, 6);
        assert.equal(await store.get(key), '6');
      });

      it('does not extend the TTL on later increments, whatever ttlMs they pass', async () => {
        const key = unique('window');
        await store.increment(key, 600);
        await sleep(250);
        const later = await store.increment(key, 60_000);
        assert.equal(later.value, 2);
        assert.ok(later.ttlMs <= 360 && later.ttlMs > 0, `ttl ${later.ttlMs} should have kept running down`);
        const remaining = await store.ttl(key);
        assert.ok(remaining !== null && remaining <= 360, `ttl() ${remaining} should not be extended`);
      });

      it('expires the counter after its TTL, then starts a new one', async () => {
        const key = unique('expire');
        await store.increment(key, 150, 7);
        await sleep(300);
        assert.equal(await store.get(key), null);
        assert.equal(await store.ttl(key), null);
        const fresh = await store.increment(key, 10_000);
        assert.equal(fresh.value, 1);
        assertTtlNear(fresh.ttlMs, 10_000);
      });

      it('is atomic: 200 concurrent increments return exactly 1..200', async () => {
        const key = unique('concurrent');
        const results = await Promise.all(Array.from({ length: 200 }, () => store.increment(key, 10_000)));
        const values = results.map((r) => r.value).sort((a, b) => a - b);
        assert.deepEqual(
          values,
          Array.from({ length: 200 }, (_, i) => i + 1),
        );
        assert.equal(await store.get(key), '200');
      });

      it('rejects a value that is not an integer, as a bug rather than an outage', async () => {
        const key = unique('text');
        await store.set(key, 'not a number', 10_000);
        const error = await store.increment(key, 10_000).then(
          () => assert.fail('increment should have rejected'),
          (e: unknown) => e,
        );
        assert.ok(error instanceof Error);
        assert.ok(!(error instanceof DependencyUnavailableError), 'a wrong value is not an outage');
        assert.equal(await store.get(key), 'not a number');
      });

      it('rejects a TTL that is not a positive integer', async () => {
        for (const ttl of [0, -1, 1.5, Number.NaN]) {
          await assert.rejects(store.increment(unique('bad-ttl'), ttl), RangeError);
        }
        await assert.rejects(store.set(unique('bad-ttl'), 'v', 0), RangeError);
        await assert.rejects(store.setIfAbsent(unique('bad-ttl'), 'v', -5), RangeError);
      });
    });

    describe('get, set, delete', () => {
      it('returns null for a missing key', async () => {
        assert.equal(await store.get(unique('missing')), null);
      });

      it('round-trips values, including the empty string and non-ASCII text', async () => {
        for (const value of ['plain', '', '{"json":[1,2]}', 'ünïcødé ✓ 🔑', 'line\nbreak']) {
          const key = unique('value');
          await store.set(key, value, 10_000);
          assert.equal(await store.get(key), value);
        }
      });

      it('overwrites the value and the TTL', async () => {
        const key = unique('overwrite');
        await store.set(key, 'one', 60_000);
        await store.set(key, 'two', 5_000);
        assert.equal(await store.get(key), 'two');
        assertTtlNear(await store.ttl(key), 5_000);
      });

      it('expires a value after its TTL', async () => {
        const key = unique('set-expire');
        await store.set(key, 'soon gone', 150);
        assert.equal(await store.get(key), 'soon gone');
        await sleep(300);
        assert.equal(await store.get(key), null);
      });

      it('deletes a key, and deleting a missing key is not an error', async () => {
        const key = unique('delete');
        await store.set(key, 'v', 10_000);
        await store.delete(key);
        assert.equal(await store.get(key), null);
        assert.equal(await store.ttl(key), null);
        await store.delete(key);
        assert.equal((await store.increment(key, 10_000)).value, 1, 'a deleted counter starts again');
      });
    });

    describe('setIfAbsent', () => {
      it('sets only when absent, with the TTL, and keeps the first value', async () => {
        const key = unique('nx');
        assert.equal(await store.setIfAbsent(key, 'first', 10_000), true);
        assert.equal(await store.setIfAbsent(key, 'second', 10_000), false);
        assert.equal(await store.get(key), 'first');
        assertTtlNear(await store.ttl(key), 10_000);
      });

      it('has exactly one winner among 50 concurrent calls', async () => {
        const key = unique('nx-race');
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) => store.setIfAbsent(key, `caller-${i}`, 10_000)),
        );
        const winners = results.flatMap((won, i) => (won ? [i] : []));
        assert.equal(winners.length, 1, `winners: ${winners.join(', ')}`);
        assert.equal(await store.get(key), `caller-${winners[0]}`);
      });

      it('can set again once the previous value expired', async () => {
        const key = unique('nx-expire');
        assert.equal(await store.setIfAbsent(key, 'old', 150), true);
        await sleep(300);
        assert.equal(await store.setIfAbsent(key, 'new', 10_000), true);
        assert.equal(await store.get(key), 'new');
      });
    });

    describe('ttl', () => {
      it('is null for a missing key', async () => {
        assert.equal(await store.ttl(unique('no-ttl')), null);
      });

      it('counts down', async () => {
        const key = unique('countdown');
        await store.set(key, 'v', 1_000);
        await sleep(200);
        const remaining = await store.ttl(key);
        assert.ok(remaining !== null && remaining > 0 && remaining <= 850, `remaining ${remaining}`);
      });
    });

    describe('publish and subscribe', () => {
      it('delivers messages in order, only on the subscribed channel, never inside publish()', async () => {
        const channel = unique('ch');
        const received: string[] = [];
        const unsubscribe = await store.subscribe(channel, (m) => received.push(m));
        await store.subscribe(unique('other-ch'), (m) => received.push(`wrong channel: ${m}`));
        const published = store.publish(channel, 'a');
        assert.deepEqual(received, [], 'delivery must be asynchronous');
        await published;
        await store.publish(unique('unrelated'), 'x');
        await store.publish(channel, 'b');
        await store.publish(channel, 'c');
        await waitFor(() => received.length >= 3);
        assert.deepEqual(received, ['a', 'b', 'c']);
        await unsubscribe();
      });

      it('delivers to every subscriber of a channel, even when another handler throws', async () => {
        const channel = unique('fanout');
        let thrown = 0;
        const received: string[] = [];
        await store.subscribe(channel, () => {
          thrown += 1;
          throw new Error('handler failure (expected by the test)');
        });
        await store.subscribe(channel, (m) => received.push(`second:${m}`));
        await store.subscribe(channel, (m) => received.push(`third:${m}`));
        await store.publish(channel, 'one');
        await store.publish(channel, 'two');
        await waitFor(() => received.length >= 4);
        assert.deepEqual(received.sort(), ['second:one', 'second:two', 'third:one', 'third:two']);
        assert.equal(thrown, 2, 'the throwing handler keeps being called');
      });

      it('stops delivery on unsubscribe, per subscription', async () => {
        const channel = unique('unsub');
        const probeChannel = unique('probe');
        const a: string[] = [];
        const b: string[] = [];
        const probe: string[] = [];
        const handlerA = (m: string): void => {
          a.push(m);
        };
        const unsubscribeA1 = await store.subscribe(channel, handlerA);
        // The same function twice is two subscriptions.
        const unsubscribeA2 = await store.subscribe(channel, handlerA);
        const unsubscribeB = await store.subscribe(channel, (m) => b.push(m));
        await store.subscribe(probeChannel, (m) => probe.push(m));

        await store.publish(channel, 'm1');
        await waitFor(() => b.length === 1);
        assert.deepEqual(a, ['m1', 'm1']);

        await unsubscribeA1();
        await unsubscribeA1(); // a second call must not remove the other subscription
        await store.publish(channel, 'm2');
        await waitFor(() => b.length === 2);
        assert.deepEqual(a, ['m1', 'm1', 'm2']);

        await unsubscribeA2();
        await store.publish(channel, 'm3');
        await waitFor(() => b.length === 3);
        assert.deepEqual(a, ['m1', 'm1', 'm2']);

        await unsubscribeB();
        await store.publish(channel, 'm4');
        // Messages arrive in publish order: once the probe has its message, m4 had its chance.
        await store.publish(probeChannel, 'after m4');
        await waitFor(() => probe.length === 1);
        assert.deepEqual(b, ['m1', 'm2', 'm3']);
        assert.deepEqual(a, ['m1', 'm1', 'm2']);
      });

      it('can subscribe again after the last subscription left', async () => {
        const channel = unique('resub');
        const unsubscribe = await store.subscribe(channel, () => {});
        await unsubscribe();
        const received: string[] = [];
        await store.subscribe(channel, (m) => received.push(m));
        await store.publish(channel, 'back');
        await waitFor(() => received.length === 1);
        assert.deepEqual(received, ['back']);
      });
    });

    describe('two instances (two processes sharing the backend)', () => {
      let other: StateStore;
      before(async () => {
        if (store.kind !== 'memory') other = await open();
      });
      const skipMemory = (kind: StateStore['kind'], t: { skip(message?: string): void }): boolean => {
        if (kind !== 'memory') return false;
        t.skip('the memory store is per process: nothing is shared between instances');
        return true;
      };

      it('share counters and values', async (t) => {
        if (skipMemory(store.kind, t)) return;
        const key = unique('shared');
        assert.equal((await store.increment(key, 10_000)).value, 1);
        assert.equal((await other.increment(key, 10_000)).value, 2);
        assert.equal((await store.increment(key, 10_000)).value, 3);
        const value = unique('shared-value');
        await other.set(value, 'from other', 10_000);
        assert.equal(await store.get(value), 'from other');
        const lock = unique('shared-lock');
        assert.equal(await store.setIfAbsent(lock, 'store', 10_000), true);
        assert.equal(await other.setIfAbsent(lock, 'other', 10_000), false);
        await other.delete(lock);
        assert.equal(await store.get(lock), null);
      });

      it("receive each other's messages", async (t) => {
        if (skipMemory(store.kind, t)) return;
        const channel = unique('shared-ch');
        const here: string[] = [];
        const there: string[] = [];
        await store.subscribe(channel, (m) => here.push(m));
        await other.subscribe(channel, (m) => there.push(m));
        await store.publish(channel, 'from store');
        await other.publish(channel, 'from other');
        await waitFor(() => here.length === 2 && there.length === 2);
        assert.deepEqual(here, ['from store', 'from other']);
        assert.deepEqual(there, ['from store', 'from other']);
      });
    });

    describe('ping and close', () => {
      it('pings while open', async () => {
        await store.ping();
      });

      it('rejects with DependencyUnavailableError once closed, and closing twice is fine', async () => {
        const closing = await open();
        const key = unique('closed');
        await closing.set(key, 'v', 10_000);
        await closing.close();
        await closing.close();
        await assert.rejects(closing.ping(), DependencyUnavailableError);
        await assert.rejects(closing.get(key), DependencyUnavailableError);
        await assert.rejects(closing.increment(key, 10_000), DependencyUnavailableError);
        await assert.rejects(
          closing.subscribe(unique('closed-ch'), () => {}),
          DependencyUnavailableError,
        );
      });
    });
  });
}

function assertTtlNear(actual: number | null, expected: number): void {
  assert.ok(
    actual !== null && actual <= expected && actual > expected - 250,
    `ttl ${actual} should be just under ${expected}`,
  );
}

async function waitFor(condition: () => boolean, timeoutMs = 2_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) assert.fail(`condition not met within ${timeoutMs} ms`);
    await sleep(5);
  }
}
