import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { getHeapStatistics } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { releaseStartupMemory } from './startup-memory.ts';

describe('releasing start-up memory', () => {
  it('compacts the heap after a burst of garbage, without leaving a gc global behind', () => {
    // A start-up-like burst: many short-lived objects that grow the young generation and old space.
    let keep: unknown[] = [];
    for (let round = 0; round < 40; round++) {
      keep = Array.from({ length: 20_000 }, (_, i) => ({ round, i, text: `entry-${round}-${i}` }));
    }
    keep = [];
    const before = getHeapStatistics().total_heap_size;
    assert.equal(releaseStartupMemory(), true);
    const after = getHeapStatistics().total_heap_size;
    assert.ok(after < before, `heap ${before} -> ${after} bytes`);
    assert.equal(keep.length, 0);
    assert.equal(typeof (globalThis as Record<string, unknown>).gc, 'undefined');
    assert.equal(runInNewContext('typeof gc'), 'undefined');
  });
});

describe("the server's module graph", () => {
  it("does not load Node's fetch implementation (undici), which nothing in it uses", () => {
    // An ES module import of node:http reads every export of it, and three of them (WebSocket,
    // CloseEvent, MessageEvent) are getters that load undici: ~1.5 MB of heap for nothing.
    const start = pathToFileURL(join(import.meta.dirname, 'start.ts')).href;
    const probe = `await import(${JSON.stringify(start)});
      console.log(process.moduleLoadList.some((name) => name.includes('undici')));`;
    const output = execFileSync(process.execPath, ['--input-type=module', '-e', probe], { encoding: 'utf8' });
    assert.equal(output.trim().split('\n').at(-1), 'false');
  });
});
