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

const cacheDir = compileCacheDir();
if (cacheDir) enableCompileCache(cacheDir);
// Imported only now, so that the cache is on when the CLI's modules load.
const { main } = await import('../src/cli/main.ts');

process.exitCode = await main(process.argv.slice(2));
