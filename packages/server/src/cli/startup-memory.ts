import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type GarbageCollect = (options: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

/**
 * Hands the memory start-up used back to the system, once, shortly after the server listens
 * (start.ts says when).
 *
 * Start-up (module loading, schema compilation, migrations, and with PGlite the engine's own
 * start) leaves V8 with a grown young generation and fragmented old-space pages that neither
 * its idle-time memory reducer nor a regular major GC returns: measured on an embedded restart,
 * RSS stayed at 173-174 MB for 30 s, and a regular major GC freed nothing. V8's memory-reducing
 * ("last resort") collection compacts the heap and shrinks the young generation: 172.6 -> 156.9 MB,
 * one pause of ~50-90 ms. Under load the young generation grows back to what traffic needs.
 *
 * V8 only offers that collection through its gc extension, so the flag is switched on for one
 * fresh context to fetch the function and off again: no `gc` global is ever visible to our code
 * or our dependencies. Returns false where the extension is unavailable (nothing is lost then).
 */
export function releaseStartupMemory(): boolean {
  let collect: GarbageCollect | undefined;
  try {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('typeof gc === "function" ? gc : undefined') as GarbageCollect | undefined;
  } catch {
    collect = undefined;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
  if (!collect) return false;
  collect({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  return true;
}
