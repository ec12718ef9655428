import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';

const MODULE = pathToFileURL(join(import.meta.dirname, 'tick-object-shape.ts')).href;

// A child process: V8's map identity is only observable with --allow-natives-syntax.
const PROBE = `
import { createHook } from 'node:async_hooks';
import { pinTickObjectShape, pinnedTickObject } from ${JSON.stringify(MODULE)};
const pinnedOk = pinTickObjectShape();
const again = pinTickObjectShape();
// Full collections while no other queue entry is alive: what start-up does.
for (let i = 0; i < 8; i++) {
  await new Promise((resolve) => process.nextTick(resolve));
  gc();
}
let fresh;
const hook = createHook({ init(_id, type, _trigger, resource) { if (type === 'TickObject' && !fresh) fresh = resource; } });
hook.enable();
process.nextTick(() => {});
hook.disable();
const pinned = pinnedTickObject();
console.log(JSON.stringify({
  pinnedOk, again,
  keys: Object.keys(pinned ?? {}),
  sameMap: %HaveSameMap(pinned, fresh),
  fast: %HasFastProperties(fresh),
}));
`;

describe('process.nextTick entry shape', () => {
  it('pins a queue entry whose map later entries share after full GCs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-tick-'));
    try {
      const probe = join(dir, 'probe.mjs');
      writeFileSync(probe, PROBE);
      const output = execFileSync(process.execPath, ['--allow-natives-syntax', '--expose-gc', probe], {
        encoding: 'utf8',
      });
      const result = JSON.parse(output.trim().split('\n').at(-1) as string);
      assert.deepEqual(result, {
        pinnedOk: true,
        again: true,
        keys: ['callback', 'args'],
        sameMap: true,
        fast: true,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
