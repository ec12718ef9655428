#!/usr/bin/env node
// Entry point of the `gatehouse` CLI. Node 24 runs the TypeScript sources directly.
import { enableCompileCache } from 'node:module';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';

/**
 * Node's compile cache keeps the type-stripped sources and their bytecode, keyed by each file's
 * contents. From the second start on, Node neither loads its TypeScript stripper (~18 MB
 * resident for the life of the process) nor re-parses the ~1,100 modules. It lives in this
 * user's cache directory rather than Node's default, the shared temp directory, where another
 * local user could plant the code we would run. NODE_COMPILE_CACHE=<dir> overrides the place,
 * NODE_DISABLE_COMPILE_CACHE=1 turns it off; an unusable directory only means no cache.
 */
function compileCacheDir() {
  const xdg = process.env.XDG_CACHE_HOME;
  try {
    return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache'), 'gatehouse', 'compile');
  } catch {
    return undefined; // no home directory: run without the cache
  }
}

/**
 * `gatehouse start` on the embedded database (no DATABASE_URL) re-executes node in the same
 * process first (process.execve: same pid, stdio and arguments) with two memory settings, for
 * a laptop-sized footprint. Measured on idle RSS (docs/benchmarks.md):
 * - MALLOC_TRIM_THRESHOLD_=1 MiB: glibc returns freed memory at the top of its heaps to the
 *   kernel. Without it, most of the ~600 MB that V8 borrows once at start-up, to optimise the
 *   hot functions of PGlite's WebAssembly, stays resident (254 -> ~190 MB).
 * - --max-semi-space-size=4 (MiB): V8's young generation stops at 8 MiB instead of the 32 MiB
 *   that start-up alone fills (~15 MB more).
 * Each costs some throughput (more trimming, more frequent scavenges), which is why servers on
 * PostgreSQL, where neither start-up cost exists, and a GATEHOUSE_CONFIG file (which may name a
 * database) keep node's defaults. A value the operator set (environment, NODE_OPTIONS or a node
 * flag) is kept; GATEHOUSE_NO_REEXEC=1 skips all this, as does a node without process.execve.
 */
function reexecWithMemorySettings() {
  if (process.argv[2] !== 'start' || process.env.GATEHOUSE_NO_REEXEC === '1') return;
  if (process.env.DATABASE_URL || process.env.GATEHOUSE_CONFIG) return;
  if (typeof process.execve !== 'function' || process.env.GATEHOUSE_REEXECUTED === '1') return;
  const env = { ...process.env, GATEHOUSE_REEXECUTED: '1' };
  env.MALLOC_TRIM_THRESHOLD_ ??= String(1024 * 1024);
  const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  const semiSpaceSet = flags.some((flag) => /^--(max-)?semi-space-size/.test(flag));
  const nodeFlags = semiSpaceSet ? process.execArgv : ['--max-semi-space-size=4', ...process.execArgv];
  process.execve(process.execPath, [process.execPath, ...nodeFlags, ...process.argv.slice(1)], env);
}

reexecWithMemorySettings();
const cacheDir = compileCacheDir();
if (cacheDir) enableCompileCache(cacheDir);
// Imported only now, so that the cache is on when the CLI's modules load.
const { pinTickObjectShape } = await import('../src/runtime/tick-object-shape.ts');
// First, before start-up's garbage collections (src/runtime/tick-object-shape.ts says why).
pinTickObjectShape();
const { main } = await import('../src/cli/main.ts');

process.exitCode = await main(process.argv.slice(2));
