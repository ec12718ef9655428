import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Runs one memory-reducing garbage collection; `gatehouse start` calls it once, when start-up
 * is over and before the server goes idle.
 *
 * Start-up (type stripping, evaluating ~1,100 modules, migrations, PGlite's boot) grows V8's young
 * generation to its maximum and leaves the pages it no longer needs pooled. V8's memory reducer
 * would return them once the process idles, but in Node 24 it never decides that the allocation
 * rate is low (`--trace-memory-reducer` logs "high alloc" every 8 s of an idle server), so they
 * stayed resident for the life of the process: ~40 MB of an idle server's RSS (measured: 160 ->
 * 121 MB on PostgreSQL). Only a "last resort" collection shrinks the young generation and
 * releases the pool. It takes ~50 ms once; under load the young generation grows back as it
 * does in any new process, so request handling is unaffected.
 */
export function releaseStartupMemory(): void {
  const gc = globalThis.gc ?? exposeGc();
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
}

/** V8's `gc` function without `--expose-gc` on the command line: a context created while the flag is set has it. */
function exposeGc(): NodeJS.GCFunction {
  setFlagsFromString('--expose-gc');
  try {
    return runInNewContext('gc') as NodeJS.GCFunction;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}
