import { createHook } from 'node:async_hooks';

let pinned: object | undefined;

/**
 * Keeps one of process.nextTick's queue entries alive for the life of the process, so that
 * every later entry shares its hidden class (V8 map).
 *
 * Why: nextTick builds each entry as an object literal with computed keys. V8 holds the map
 * transitions such literals walk only weakly, so a full GC that runs while no entry is alive
 * drops them, and the next entry gets fresh maps. After a few such rounds the property stores
 * of that literal turn megamorphic, and stay so: each entry then costs ~0.5 µs instead of a few
 * nanoseconds. Start-up runs many full GCs (PGlite's first start, logins hashing passwords), and
 * Node's HTTP server calls nextTick about seven times a request. Measured on an embedded first
 * start, GET /healthz under load: nextTick took 5.1 µs of CPU per request, 0.4 µs with the
 * entry pinned (CPU profiles; docs/benchmarks.md).
 *
 * async_hooks is the only public way to see an entry (its init hook receives it); the hook is
 * enabled for one nextTick call, at start-up, then disabled. Call this before anything else.
 */
export function pinTickObjectShape(): boolean {
  if (pinned) return true;
  const hook = createHook({
    init(_asyncId, type, _triggerAsyncId, resource) {
      if (type === 'TickObject' && pinned === undefined) pinned = resource as object;
    },
  });
  hook.enable();
  try {
    process.nextTick(() => {});
  } finally {
    hook.disable();
  }
  return pinned !== undefined;
}

/** The pinned entry (tests). */
export function pinnedTickObject(): object | undefined {
  return pinned;
}
