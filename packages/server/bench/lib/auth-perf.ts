// Linux `perf` profiles of a Gatehouse process: on-CPU samples of every thread, kernel included,
// so time spent in syscalls (loopback TCP to PostgreSQL) and time the process was not running
// are told apart, which V8's --cpu-prof (wall-clock samples of the main thread) cannot do.
// Needs `perf` and a server started with --perf-basic-prof-only-functions (names JIT-compiled JS).
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { LOAD_CPU } from './processes.ts';

export function perfAvailable(): boolean {
  try {
    execFileSync('perf', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Node flag that makes JIT-compiled JS functions visible to perf (via /tmp/perf-<pid>.map). */
export const PERF_NODE_ARGS = ['--perf-basic-prof-only-functions'];

/** Starts `perf record` on pid (the recorder itself on the load core); call the result to stop it. */
export function startPerf(pid: number, file: string): () => Promise<void> {
  const perf: ChildProcess = spawn(
    'taskset',
    ['-c', String(LOAD_CPU), 'perf', 'record', '-F', '499', '-g', '-o', file, '-p', String(pid)],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => perf.once('exit', () => resolve()));
  // perf writes its file on SIGINT and may exit by that signal (exitCode stays null): check both.
  return () => {
    if (perf.exitCode === null && perf.signalCode === null) perf.kill('SIGINT');
    return exited;
  };
}

/** The JIT symbol map node writes for perf; remove it once the profile is summarised. */
export function removePerfMap(pid: number | undefined): void {
  if (pid !== undefined) rmSync(`/tmp/perf-${pid}.map`, { force: true });
}

export interface PerfSummary {
  samples: number;
  /** Share of samples by thread name. */
  threads: Record<string, number>;
  /** Share of samples whose innermost frame is in the kernel. */
  kernel: number;
  /** Share of samples by what the work was for (see CATEGORIES), each with its kernel part. */
  categories: { category: string; share: number; kernel: number }[];
  /** Innermost user-space frames, busiest first. */
  topSymbols: { symbol: string; share: number }[];
}

// First match wins, so the order sets priority: a socket write issued by the PostgreSQL client
// counts as PostgreSQL client work although Node's stream code and the kernel did it.
// OpenSSL's assembly has no frame pointers, so its samples often carry no caller at all (or a
// wrong one): crypto is recognised by OpenSSL's own symbols, first.
const CATEGORIES: [string, RegExp][] = [
  [
    'crypto (OpenSSL, node:crypto, jose)',
    /nistz256|ecdsa|EVP_|\bBN_|\bbn_|bin2bn|bn2bin|sha256_block|sha512_block|ossl_|CRYPTO_|node::crypto::|node:internal\/crypto|node_modules\/jose\/|src\/crypto\//i,
  ],
  [
    'logging (pino)',
    /node_modules\/(pino|sonic-boom|@pinojs|thread-stream|pino-std-serializers)\/|src\/logging\//,
  ],
  ['PostgreSQL client (pg)', /node_modules\/(pg|pg-protocol|pg-pool|pg-types|postgres-[a-z]+|pgpass)\//],
  ['Redis client (ioredis)', /node_modules\/(ioredis|@ioredis|redis-parser|redis-errors)\//],
  [
    'HTTP (node:http, Fastify and plugins)',
    /node:_http_|llhttp|http_parser|node_modules\/(fastify|find-my-way|@fastify|avvio|fast-json-stringify|secure-json-parse|helmet|ajv|light-my-request|fast-querystring|cookie)\//,
  ],
  ['Gatehouse code (src/)', /packages\/server\/src\//],
];

function categorise(thread: string, frames: string[]): string {
  if (thread === 'libuv-worker') return 'libuv pool (argon2)';
  if (thread !== 'MainThread') return `other threads (${thread}: GC helpers, ...)`;
  for (const [name, pattern] of CATEGORIES) if (frames.some((frame) => pattern.test(frame))) return name;
  if (frames.some((frame) => /v8::internal::(Heap|Scavenger|MarkCompact|GCTracer)/.test(frame))) {
    return 'garbage collection (main thread)';
  }
  if (frames.some((frame) => frame.includes('JS:'))) return 'other JS (Node internals, event loop)';
  return 'no JS on the stack (event loop, I/O polling, scheduler)';
}

/** Reads a perf.data file with `perf script` and splits the on-CPU samples. */
export function summarisePerf(file: string, top = 12): PerfSummary {
  const text = execFileSync('perf', ['script', '-i', file, '-F', 'comm,tid,ip,sym,dso'], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const threads = new Map<string, number>();
  const categories = new Map<string, { count: number; kernel: number }>();
  const symbols = new Map<string, number>();
  let samples = 0;
  let kernel = 0;
  for (const block of text.split('\n\n')) {
    const lines = block
      .split('\n')
      .map((line) => line.trim())
      .filter(Boolean);
    const [head, ...frames] = lines;
    if (!head) continue;
    samples++;
    const thread = head.replace(/\s+\d+\s*$/, '');
    threads.set(thread, (threads.get(thread) ?? 0) + 1);
    const inKernel = frames[0]?.includes('[kernel.kallsyms]') ?? false;
    if (inKernel) kernel++;
    const category = categorise(thread, frames);
    const entry = categories.get(category) ?? { count: 0, kernel: 0 };
    entry.count++;
    if (inKernel) entry.kernel++;
    categories.set(category, entry);
    const user = frames.find((frame) => !frame.includes('[kernel.kallsyms]'));
    if (user) {
      // "<address> <symbol> (<dso>)" -> symbol, without the perf map's path noise.
      const symbol = user
        .replace(/^[0-9a-f]+\s+/, '')
        .replace(/\s+\([^)]*\)$/, '')
        .replace(/file:\/\/|\S*node_modules\/|\S*packages\/server\//g, '');
      symbols.set(symbol, (symbols.get(symbol) ?? 0) + 1);
    }
  }
  const share = (count: number) => Math.round((count / Math.max(1, samples)) * 1000) / 10;
  return {
    samples,
    threads: Object.fromEntries(
      [...threads].sort((a, b) => b[1] - a[1]).map(([name, n]) => [name, share(n)]),
    ),
    kernel: share(kernel),
    categories: [...categories]
      .sort((a, b) => b[1].count - a[1].count)
      .map(([category, entry]) => ({ category, share: share(entry.count), kernel: share(entry.kernel) })),
    topSymbols: [...symbols]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([symbol, n]) => ({ symbol, share: share(n) })),
  };
}
