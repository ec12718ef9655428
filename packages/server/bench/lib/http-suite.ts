import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { type LoadOptions, type LoadResult, runLoad } from './load.ts';
import {
  captureStderr,
  coreBusySeconds,
  cpuSeconds,
  freePort,
  interruption,
  rssMb,
  SERVER_CPU,
  sleep,
  spawnNode,
  stopProcess,
  waitForQuiet,
  waitUntilServing,
} from './processes.ts';
import { formatTable, median } from './stats.ts';

const SERVER_ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(SERVER_ROOT, 'bin', 'gatehouse.js');
const BARE_SERVER = join(import.meta.dirname, 'bare-server.ts');
const PATH_NAME = '/healthz';

export interface HttpSuiteOptions extends LoadOptions {
  rounds: number;
  warmupS: number;
  /** How long a fresh Gatehouse sits idle before its RSS is read. */
  idleS: number;
  /** Longest wait, over the whole suite, for other work on the machine to calm down before rounds. */
  quietBudgetS: number;
  /**
   * Adds rows that split the cost (first backend only): bare Fastify + security headers, Gatehouse's HTTP
   * shell without storage, Gatehouse with logging off.
   */
  profile: boolean;
  /**
   * Directory for V8 CPU profiles of every Gatehouse process (node --cpu-prof); profiling slows
   * the server, so such a run's figures are not results.
   */
  cpuProfileDir?: string;
}

export interface Backend {
  name: string;
  databaseUrl?: string;
  redisUrl?: string;
}

interface RoundResult extends LoadResult {
  /** Share of one core the server used while loaded (1 = saturated). */
  serverCpu: number | null;
  /** Server CPU time per request in µs: steadier than req/s when other work shares the machine. */
  serverCpuUsPerRequest: number | null;
  /**
   * Share of the server's core busy with anything but the server (kernel network work, and
   * other processes: a noisy machine shows up here).
   */
  otherCpuOnServerCore: number | null;
  /** Seconds waited before the round for both cores to be nearly idle; quiet=false: gave up. */
  waitedForQuietS: number;
  quiet: boolean;
}

type Kind = 'baseline' | 'gatehouse' | 'variant';

export interface TargetResult {
  name: string;
  kind: Kind;
  rounds: RoundResult[];
  median: {
    requestsPerSecond: number;
    latencyP50: number;
    latencyP99: number;
    latencyMean: number;
    serverCpu: number | null;
    serverCpuUsPerRequest: number | null;
    otherCpuOnServerCore: number | null;
  };
  /** Median req/s over the bare Fastify baseline's median req/s, same backend pass. */
  ratioToBare: number | null;
  /**
   * Bare Fastify's median CPU µs per request over this target's: the req/s ratio both would reach
   * with a saturated server core each. Steadier on a shared machine, and not flattered when the
   * load generator, not the server, limits the baseline.
   */
  cpuRatioToBare: number | null;
  /** RSS after idling, before any load (Gatehouse: a restart on an initialised database). */
  idleRssMb: number | null;
  /** Gatehouse only: RSS after idling in the very first start on an empty data dir / schema. */
  firstStartIdleRssMb: number | null;
  afterLoadRssMb: number | null;
}

export interface BackendResult {
  name: string;
  targets: TargetResult[];
  error?: string;
}

export interface HttpSuiteResult {
  path: string;
  options: HttpSuiteOptions;
  backends: BackendResult[];
}

/** Embedded always; PostgreSQL and/or Redis when DATABASE_URL / REDIS_URL are set (like the tests). */
export function backends(env: NodeJS.ProcessEnv = process.env): Backend[] {
  const list: Backend[] = [{ name: 'embedded (PGlite + memory)' }];
  if (env.DATABASE_URL || env.REDIS_URL) {
    list.push({
      name: `${env.DATABASE_URL ? 'PostgreSQL' : 'PGlite'} + ${env.REDIS_URL ? 'Redis' : 'memory'}`,
      ...(env.DATABASE_URL ? { databaseUrl: env.DATABASE_URL } : {}),
      ...(env.REDIS_URL ? { redisUrl: env.REDIS_URL } : {}),
    });
  }
  return list;
}

interface RunningTarget {
  name: string;
  kind: Kind;
  url: string;
  child: ChildProcess;
  idleRssMb: number | null;
  firstStartIdleRssMb: number | null;
}

type Cleanup = () => Promise<void>;

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

const VARIANT_NAMES = {
  bare: 'bare Fastify',
  headers: 'bare Fastify + security headers',
  shell: 'HTTP shell, no storage',
} as const;

/** bench/lib/bare-server.ts: the baseline, or a profiling variant of it. */
async function startBare(variant: keyof typeof VARIANT_NAMES, cleanups: Cleanup[]): Promise<RunningTarget> {
  const port = await freePort();
  const child = spawnNode(SERVER_CPU, [BARE_SERVER], {
    cwd: SERVER_ROOT,
    env: { PATH: process.env.PATH, PORT: String(port), BENCH_VARIANT: variant, GATEHOUSE_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  cleanups.push(() => stopProcess(child));
  const url = `http://127.0.0.1:${port}${PATH_NAME}`;
  await waitUntilServing(child, url, captureStderr(child));
  const kind = variant === 'bare' ? 'baseline' : 'variant';
  return { name: VARIANT_NAMES[variant], kind, url, child, idleRssMb: null, firstStartIdleRssMb: null };
}

async function dropSchema(databaseUrl: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

/** `gatehouse start` as operators run it: its own process, logs on stdout (to /dev/null here). */
async function startGatehouse(
  backend: Backend,
  logLevel: 'info' | 'silent',
  cleanups: Cleanup[],
  firstStartIdleS: number,
  cpuProfileDir: string | undefined,
): Promise<RunningTarget> {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-'));
  cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    PORT: String(port),
    HOST: '127.0.0.1',
    GATEHOUSE_DATA_DIR: dataDir,
    GATEHOUSE_LOG_LEVEL: logLevel,
  };
  if (backend.databaseUrl) {
    const schema = `bench_${randomBytes(6).toString('hex')}`;
    env.DATABASE_URL = backend.databaseUrl;
    env.GATEHOUSE_DATABASE_SCHEMA = schema;
    env.GATEHOUSE_SECRET = randomBytes(48).toString('base64');
    const databaseUrl = backend.databaseUrl;
    cleanups.push(() =>
      dropSchema(databaseUrl, schema).catch((error: Error) =>
        log(`WARNING: could not drop schema ${schema}: ${error.message}`),
      ),
    );
  }
  if (backend.redisUrl) env.REDIS_URL = backend.redisUrl;

  const url = `http://127.0.0.1:${port}${PATH_NAME}`;
  const nodeFlags = cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfileDir}`] : [];
  const start = async () => {
    const child = spawnNode(SERVER_CPU, [...nodeFlags, CLI, 'start'], {
      cwd: SERVER_ROOT,
      env,
      // stdout carries the JSON access log: discarded, as a log shipper reading it costs this process nothing more.
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    cleanups.push(() => stopProcess(child));
    await waitUntilServing(child, url, captureStderr(child));
    return child;
  };

  let firstStartIdleRssMb: number | null = null;
  if (firstStartIdleS > 0) {
    // The first start initialises the database (initdb for PGlite, migrations); the measured
    // process is a restart on that database, as a server runs day to day.
    const first = await start();
    await sleep(firstStartIdleS * 1000);
    firstStartIdleRssMb = rssMb(first.pid);
    log(`[http] ${backend.name}: idle RSS after the first start ${firstStartIdleRssMb} MB`);
    await stopProcess(first);
  }
  const child = await start();
  const name = logLevel === 'info' ? 'Gatehouse' : 'Gatehouse (log silent)';
  const kind = logLevel === 'info' ? 'gatehouse' : 'variant';
  return { name, kind, url, child, idleRssMb: null, firstStartIdleRssMb };
}

/** What is left of HttpSuiteOptions.quietBudgetS. */
let quietBudgetS = 0;

async function measureRound(target: RunningTarget, options: LoadOptions): Promise<RoundResult> {
  if (interruption.requested) throw new Error('interrupted');
  const { waitedS, quiet } = await waitForQuiet(Math.min(15, quietBudgetS));
  quietBudgetS = Math.max(0, quietBudgetS - waitedS);
  const pid = target.child.pid;
  const cpuBefore = cpuSeconds(pid);
  const coreBefore = coreBusySeconds(SERVER_CPU);
  const result = await runLoad(target.url, options);
  const cpuAfter = cpuSeconds(pid);
  const coreAfter = coreBusySeconds(SERVER_CPU);
  if (result.errors || result.timeouts || result.non2xx) {
    throw new Error(
      `${target.name}: ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx responses`,
    );
  }
  const serverCpu =
    cpuBefore !== null && cpuAfter !== null
      ? Math.round(((cpuAfter - cpuBefore) / options.durationS) * 100) / 100
      : null;
  // Divided by the load window although autocannon's start-up is included: an upper bound.
  const otherCpuOnServerCore =
    cpuBefore !== null && cpuAfter !== null && coreBefore !== null && coreAfter !== null
      ? Math.round(((coreAfter - coreBefore - (cpuAfter - cpuBefore)) / options.durationS) * 100) / 100
      : null;
  const serverCpuUsPerRequest =
    cpuBefore !== null && cpuAfter !== null && result.requests > 0
      ? Math.round(((cpuAfter - cpuBefore) / result.requests) * 1e6 * 10) / 10
      : null;
  return {
    ...result,
    serverCpu,
    serverCpuUsPerRequest,
    otherCpuOnServerCore,
    waitedForQuietS: waitedS,
    quiet,
  };
}

async function runCleanups(cleanups: Cleanup[]): Promise<void> {
  for (const cleanup of cleanups.reverse()) {
    await cleanup().catch((error: Error) => log(`WARNING: cleanup failed: ${error.message}`));
  }
  cleanups.length = 0;
}

async function measureBackend(
  backend: Backend,
  baselines: RunningTarget[],
  options: HttpSuiteOptions,
  withProfileRows: boolean,
): Promise<TargetResult[]> {
  const cleanups: Cleanup[] = [];
  try {
    log(`\n[http] ${backend.name}: starting Gatehouse`);
    const profileDir = options.cpuProfileDir;
    const gatehouses = [await startGatehouse(backend, 'info', cleanups, options.idleS, profileDir)];
    if (withProfileRows) gatehouses.push(await startGatehouse(backend, 'silent', cleanups, 0, profileDir));
    await sleep(options.idleS * 1000);

    const bare = baselines[0] as RunningTarget;
    const targets = [bare, gatehouses[0] as RunningTarget];
    if (withProfileRows) targets.push(...baselines.slice(1), ...gatehouses.slice(1));
    for (const target of targets) {
      target.idleRssMb = rssMb(target.child.pid);
      log(`[http] ${target.name}: idle RSS ${target.idleRssMb} MB`);
    }

    for (const target of targets) {
      await runLoad(target.url, { ...options, durationS: options.warmupS });
    }
    const rounds = new Map<RunningTarget, RoundResult[]>(targets.map((target) => [target, []]));
    // Targets alternate within every round (ABAB...), so drift over the run hits all of them alike.
    for (let round = 1; round <= options.rounds; round++) {
      for (const target of targets) {
        const result = await measureRound(target, options);
        rounds.get(target)?.push(result);
        log(
          `[http] round ${round}/${options.rounds} ${target.name.padEnd(24)} ${String(result.requestsPerSecond).padStart(7)} req/s` +
            `  p50 ${result.latencyP50} ms  p99 ${result.latencyP99} ms  server CPU ${result.serverCpu ?? '?'}` +
            ` (${result.serverCpuUsPerRequest ?? '?'} µs/req)` +
            `  other on its core ${result.otherCpuOnServerCore ?? '?'}` +
            (result.quiet ? '' : '  (machine busy)'),
        );
      }
    }

    const bareRounds = rounds.get(bare) ?? [];
    const bareMedian = median(bareRounds.map((r) => r.requestsPerSecond));
    const bareCpu = median(
      bareRounds.map((r) => r.serverCpuUsPerRequest).filter((value): value is number => value !== null),
    );
    return targets.map((target) => {
      const list = rounds.get(target) ?? [];
      const known = (values: (number | null)[]) => values.filter((value): value is number => value !== null);
      const cpu = known(list.map((r) => r.serverCpu));
      const other = known(list.map((r) => r.otherCpuOnServerCore));
      const perRequest = known(list.map((r) => r.serverCpuUsPerRequest));
      const requestsPerSecond = median(list.map((r) => r.requestsPerSecond));
      return {
        name: target.name,
        kind: target.kind,
        rounds: list,
        median: {
          requestsPerSecond,
          latencyP50: median(list.map((r) => r.latencyP50)),
          latencyP99: median(list.map((r) => r.latencyP99)),
          latencyMean: Math.round(median(list.map((r) => r.latencyMean)) * 100) / 100,
          serverCpu: cpu.length > 0 ? median(cpu) : null,
          serverCpuUsPerRequest: perRequest.length > 0 ? median(perRequest) : null,
          otherCpuOnServerCore: other.length > 0 ? median(other) : null,
        },
        ratioToBare: target === bare ? null : Math.round((requestsPerSecond / bareMedian) * 1000) / 1000,
        cpuRatioToBare:
          target === bare || perRequest.length === 0 || Number.isNaN(bareCpu)
            ? null
            : Math.round((bareCpu / median(perRequest)) * 1000) / 1000,
        idleRssMb: target.idleRssMb,
        firstStartIdleRssMb: target.firstStartIdleRssMb,
        afterLoadRssMb: rssMb(target.child.pid),
      };
    });
  } finally {
    await runCleanups(cleanups);
  }
}

export async function runHttpSuite(options: HttpSuiteOptions): Promise<HttpSuiteResult> {
  const cleanups: Cleanup[] = [];
  const result: HttpSuiteResult = { path: PATH_NAME, options, backends: [] };
  quietBudgetS = options.quietBudgetS;
  try {
    const baselines = [await startBare('bare', cleanups)];
    if (options.profile)
      baselines.push(await startBare('headers', cleanups), await startBare('shell', cleanups));
    for (const [index, backend] of backends().entries()) {
      if (interruption.requested) break;
      try {
        const targets = await measureBackend(backend, baselines, options, options.profile && index === 0);
        result.backends.push({ name: backend.name, targets });
      } catch (error) {
        log(`[http] ${backend.name} failed: ${(error as Error).message}`);
        result.backends.push({ name: backend.name, targets: [], error: (error as Error).message });
      }
    }
    return result;
  } finally {
    await runCleanups(cleanups);
  }
}

const cpuPercent = (share: number | null) => (share === null ? '' : `${Math.round(share * 100)}%`);
const percent = (ratio: number | null) => (ratio === null ? '' : `${(ratio * 100).toFixed(1)}%`);

export function formatHttpResult(result: HttpSuiteResult): string {
  const rows = result.backends.flatMap((backend) =>
    backend.error
      ? [[backend.name, 'FAILED', '', '', '', '', '', '', '', '', '', '', '', '']]
      : backend.targets.map((target) => [
          backend.name,
          target.name,
          target.median.requestsPerSecond,
          target.median.latencyP50,
          target.median.latencyP99,
          target.median.latencyMean,
          cpuPercent(target.median.serverCpu),
          target.median.serverCpuUsPerRequest ?? '',
          cpuPercent(target.median.otherCpuOnServerCore),
          percent(target.ratioToBare),
          percent(target.cpuRatioToBare),
          target.idleRssMb ?? '',
          target.firstStartIdleRssMb ?? '',
          target.afterLoadRssMb ?? '',
        ]),
  );
  const { rounds, durationS, warmupS, connections, pipelining } = result.options;
  const all = result.backends.flatMap((backend) => backend.targets.flatMap((target) => target.rounds));
  const busy = all.filter((round) => !round.quiet || (round.otherCpuOnServerCore ?? 0) > 0.15).length;
  const warning =
    busy > 0
      ? [
          `WARNING: ${busy} of ${all.length} rounds shared the machine with other work ` +
            '(busy before the round, or >15% of the server core used by others): the numbers are noisy.',
        ]
      : [];
  return [
    `HTTP GET ${result.path}: medians of ${rounds} rounds x ${durationS} s (warm-up ${warmupS} s), ` +
      `${connections} connections, pipelining ${pipelining}`,
    formatTable(
      [
        'backend',
        'server',
        'req/s',
        'p50 ms',
        'p99 ms',
        'mean ms',
        'server CPU',
        'CPU µs/req',
        'other CPU core 0',
        'vs bare',
        'vs bare (CPU)',
        'idle RSS MB',
        'idle RSS 1st start',
        'RSS after load MB',
      ],
      rows,
    ),
    ...warning,
  ].join('\n');
}
