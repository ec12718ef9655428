// Gatehouse benchmarks (`npm run bench`); method and results in docs/benchmarks.md.
//
//   node bench/run.ts                 every suite: http, then each bench/<name>.bench.ts
//   node bench/run.ts http            the HTTP middleware-stack suite only
//   node bench/run.ts <name> ...      bench/<name>.bench.ts (pinned to one core, stdout passed through)
//
// Options (flags, or environment variables since `npm run bench -- ...` swallows flags):
//   --rounds N / BENCH_ROUNDS (5)   --duration S / BENCH_DURATION (5)   --warmup S / BENCH_WARMUP (2)
//   --connections N / BENCH_CONNECTIONS (50)   --profile / BENCH_PROFILE=1 (extra rows that split the cost)
//   --quiet-wait S / BENCH_QUIET_WAIT (45): longest total wait for a busy machine to calm down before rounds
//   --cpu-prof / BENCH_CPU_PROF=1: V8 CPU profiles of the Gatehouse processes into .bench/profiles/
//     (profiling slows the server: such a run is for finding costs, its figures are not results)
// Results: a table on stdout, progress on stderr, JSON in .bench/results-<suite>.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { formatHttpResult, type HttpSuiteOptions, runHttpSuite } from './lib/http-suite.ts';
import { checkPinning, interruption, killAllChildren, pinSelf } from './lib/processes.ts';
import { runScriptSuite, scriptSuites } from './lib/script-suite.ts';

const RESULTS_DIR = join(import.meta.dirname, '..', '.bench');

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rounds: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string' },
    'quiet-wait': { type: 'string' },
    profile: { type: 'boolean' },
    'cpu-prof': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
});

const available = ['http', ...scriptSuites()];
if (values.help) {
  process.stdout.write(`usage: node bench/run.ts [suite...]\nsuites: ${available.join(', ')}\n`);
  process.exit(0);
}
const suites = positionals.length > 0 ? positionals : available;
const unknown = suites.filter((suite) => !available.includes(suite));
if (unknown.length > 0) {
  process.stderr.write(`unknown suite ${unknown.join(', ')}; available: ${available.join(', ')}\n`);
  process.exit(2);
}

function positive(flag: string | undefined, env: string | undefined, fallback: number, name: string): number {
  const raw = flag ?? env;
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) {
    process.stderr.write(`${name} must be a positive number, got ${raw}\n`);
    process.exit(2);
  }
  return value;
}

function truthy(raw: string | undefined): boolean {
  return ['1', 'true', 'yes'].includes((raw ?? '').toLowerCase());
}

const httpOptions: HttpSuiteOptions = {
  rounds: Math.round(positive(values.rounds, process.env.BENCH_ROUNDS, 5, 'rounds')),
  durationS: positive(values.duration, process.env.BENCH_DURATION, 5, 'duration'),
  warmupS: positive(values.warmup, process.env.BENCH_WARMUP, 2, 'warmup'),
  connections: Math.round(positive(values.connections, process.env.BENCH_CONNECTIONS, 50, 'connections')),
  pipelining: 1,
  idleS: 5,
  quietBudgetS: positive(values['quiet-wait'], process.env.BENCH_QUIET_WAIT, 45, 'quiet-wait'),
  ...(values['cpu-prof'] === true || truthy(process.env.BENCH_CPU_PROF)
    ? { cpuProfileDir: join(RESULTS_DIR, 'profiles') }
    : {}),
  profile: values.profile === true || truthy(process.env.BENCH_PROFILE),
};

// Ctrl-C: kill what we started, let the finally blocks clean up (schemas, temp dirs), then leave.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interruption.requested) process.exit(130);
    interruption.requested = true;
    process.stderr.write(`\n${signal}: stopping\n`);
    killAllChildren('SIGTERM');
    setTimeout(() => process.exit(130), 15_000).unref();
  });
}

/** Credentials never reach the results file. */
function redactUrl(raw: string | undefined): string | undefined {
  if (!raw) return undefined;
  return raw.replace(/\/\/([^:@/]+):[^@/]*@/g, '//$1:***@');
}

const pinning = checkPinning();
const machine = {
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model,
  memoryGb: Math.round(totalmem() / 2 ** 30),
  kernel: release(),
  node: process.version,
  pinning: pinning.enabled
    ? 'server taskset -c 0, load generator taskset -c 1'
    : `off: ${pinning.warning ?? 'unknown'}`,
};
pinSelf();

mkdirSync(RESULTS_DIR, { recursive: true });
let failures = 0;
for (const suite of suites) {
  if (interruption.requested) break;
  const resultsPath = join(RESULTS_DIR, `results-${suite}.json`);
  const startedAt = new Date().toISOString();
  try {
    if (suite === 'http') {
      const result = await runHttpSuite(httpOptions);
      // An interrupted run's figures are partial: keep the previous results file.
      if (interruption.requested) break;
      const record = {
        suite,
        startedAt,
        finishedAt: new Date().toISOString(),
        command: `node bench/run.ts ${process.argv.slice(2).join(' ')}`.trim(),
        environment: {
          DATABASE_URL: redactUrl(process.env.DATABASE_URL),
          REDIS_URL: redactUrl(process.env.REDIS_URL),
        },
        machine,
        ...result,
      };
      writeFileSync(resultsPath, `${JSON.stringify(record, null, 2)}\n`);
      process.stdout.write(`\n${formatHttpResult(result)}\n(JSON: ${resultsPath})\n`);
      if (result.backends.some((backend) => backend.error)) failures++;
    } else {
      process.stderr.write(`\n[${suite}] bench/${suite}.bench.ts\n`);
      const { exitCode, durationS } = await runScriptSuite(suite, resultsPath);
      process.stderr.write(`[${suite}] exit ${exitCode} after ${durationS} s (JSON: ${resultsPath})\n`);
      if (exitCode !== 0) failures++;
    }
  } catch (error) {
    failures++;
    process.stderr.write(`[${suite}] failed: ${(error as Error).stack ?? error}\n`);
  }
}

killAllChildren();
process.exitCode = failures > 0 || interruption.requested ? 1 : 0;
// Everything is stopped by now; if some handle still holds the loop open, do not hang a CI job on it.
setTimeout(() => {
  process.stderr.write('WARNING: handles still open after the run; exiting anyway\n');
  process.exit();
}, 2000).unref();
