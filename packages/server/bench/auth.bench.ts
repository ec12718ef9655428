// Gatehouse's account and token paths against PostgreSQL, each next to a floor measured in the
// same run (method and results: docs/benchmarks.md):
//   node bench/run.ts auth        (or: node bench/auth.bench.ts)   needs DATABASE_URL; REDIS_URL optional
//
// 1. Password logins: POST /v1/auth/login (autocannon, C connections) vs raw @node-rs/argon2
//    verify() with the same parameters and C verifies in flight on the default libuv pool; then
//    login latency at half the measured login rate (open loop, evenly spaced arrivals).
// 2. Session-cookie validation: GET /v1/me with the gh_session cookie vs bare Fastify GET /healthz.
// 3. Refresh-token rotation: N clients, each logging in once, then chaining POST /v1/auth/refresh
//    with the refresh_token of the previous response; vs bare Fastify GET /healthz.
//
// Gatehouse (`bin/gatehouse.js start`, its own process) and the raw argon2 process run on core 0
// (taskset -c 0); autocannon, the client load generator and this script on core 1. PostgreSQL
// and Redis are not pinned: they run wherever the kernel puts them (reported as "other CPU on
// core 0"). Targets alternate within every round; tables show medians over the rounds.
//
// Environment: BENCH_ROUNDS (5), BENCH_DURATION (4, seconds per round), BENCH_LOGIN_DURATION
// (twice BENCH_DURATION, seconds per login round), BENCH_WARMUP (2),
// BENCH_CONNECTIONS (50, GET routes), BENCH_LOGIN_CONCURRENCY (16), BENCH_REFRESH_CLIENTS (32),
// BENCH_QUIET_WAIT (30: longest total wait for busy cores to calm down before the phases),
// BENCH_AUTH_PHASES (login,session,refresh); BENCH_PROFILE=1: extra rows that split the cost
// (log level silent; /v1/me with a Bearer token; /v1/me/sessions) and a probe of PostgreSQL
// commit latency during the login-latency rounds; BENCH_CPU_PROF=1: after the
// rounds, one more Gatehouse per phase under --cpu-prof and a summary of where its main thread's
// time goes (profiling slows the server: those figures are not results); BENCH_PERF=1: one more
// round per phase under Linux `perf record` (on-CPU samples of all the server's threads, kernel
// included), split by what the work was for.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { runRawArgon2 } from './lib/auth-argon2.ts';
import { type ClientLoadResult, runClientLoad } from './lib/auth-client-load.ts';
import { startCommitProbe } from './lib/auth-commit-probe.ts';
import {
  cpuDelta,
  foreignShare,
  type ProcessCpu,
  type ProfileSummary,
  processCpu,
  summariseProfile,
  threadCpuSeconds,
  threadShares,
} from './lib/auth-cpu.ts';
import {
  PERF_NODE_ARGS,
  type PerfSummary,
  perfAvailable,
  removePerfMap,
  startPerf,
  summarisePerf,
} from './lib/auth-perf.ts';
import {
  createAdmin,
  expectOk,
  type GatehouseSetup,
  gatehouseSetup,
  login,
  type Running,
  startBare,
  startGatehouse,
} from './lib/auth-server.ts';
import { type LoadResult, runLoad, runRequestLoad } from './lib/load.ts';
import {
  checkPinning,
  coreBusySeconds,
  cpuSeconds,
  killAllChildren,
  LOAD_CPU,
  pinSelf,
  SERVER_CPU,
  sleep,
  waitForQuiet,
} from './lib/processes.ts';
import { formatTable, median } from './lib/stats.ts';

const env = process.env;
const number = (name: string, fallback: number) => {
  const value = Number(env[name] ?? fallback);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number`);
  return value;
};
const ROUNDS = Math.round(number('BENCH_ROUNDS', 5));
const DURATION_S = number('BENCH_DURATION', 4);
const WARMUP_S = number('BENCH_WARMUP', 2);
const CONNECTIONS = Math.round(number('BENCH_CONNECTIONS', 50));
const LOGIN_CONCURRENCY = Math.round(number('BENCH_LOGIN_CONCURRENCY', 16));
const REFRESH_CLIENTS = Math.round(number('BENCH_REFRESH_CLIENTS', 32));
const LATENCY_ROUNDS = 3;
const LATENCY_DURATION_S = DURATION_S * 2.5;
// Login rounds run twice as long: at 30-80 logins/s a 4 s round counts only ~120-320 logins, and
// on a noisy host alternating pairs of such rounds spread by +-10 points.
const LOGIN_DURATION_S = number('BENCH_LOGIN_DURATION', DURATION_S * 2);
// Longest total wait for a busy machine to calm down before the phases (as in the http suite).
let quietBudgetS = number('BENCH_QUIET_WAIT', 30);
const quietness: Record<string, { waitedS: number; quiet: boolean }> = {};
const PHASES = (env.BENCH_AUTH_PHASES ?? 'login,session,refresh').split(',').map((phase) => phase.trim());
const truthy = (value: string | undefined) => ['1', 'true', 'yes'].includes(value ?? '');
const PROFILE = truthy(env.BENCH_PROFILE);
const CPU_PROF = truthy(env.BENCH_CPU_PROF);
const PERF = truthy(env.BENCH_PERF) && perfAvailable();
if (truthy(env.BENCH_PERF) && !PERF)
  process.stderr.write('WARNING: BENCH_PERF: `perf` not found, skipping\n');
const TARGETS = { loginShareOfRaw: 0.85, p99OverP50: 3, sessionShareOfBare: 0.7, refreshPerSecond: 2000 };

const log = (line: string) => process.stderr.write(`${line}\n`);

if (!env.DATABASE_URL) {
  process.stdout.write(
    'auth: skipped: set DATABASE_URL to a PostgreSQL database (e.g. postgres://postgres@127.0.0.1:5432/test)\n',
  );
  process.exit(0);
}
const DATABASE_URL = env.DATABASE_URL;
const REDIS_URL = env.REDIS_URL || undefined;

/** The commit measured (and whether the tree had changes): the code moves fast. */
function gitCommit(): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', '.'], { encoding: 'utf8' }).trim();
    return dirty ? `${commit} + uncommitted changes` : commit;
  } catch {
    return 'unknown';
  }
}

// bench/run.ts starts scripts on the server core; this one only orchestrates, so it moves to the
// load core and leaves core 0 to the measured processes.
const pinning = checkPinning();
const machine = {
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model,
  memoryGb: Math.round(totalmem() / 2 ** 30),
  kernel: release(),
  node: process.version,
  commit: gitCommit(),
  pinning: pinning.enabled ? 'server taskset -c 0, load generator taskset -c 1' : `off: ${pinning.warning}`,
};
pinSelf();

// --- measuring one target for one round ----------------------------------------------------

interface Measured {
  perSecond: number;
  latencyP50: number;
  latencyP99: number;
  failures: number;
  /** Set by targets that measure their own CPU (the raw argon2 process). */
  cpu?: number;
  /**
   * autocannon: how long the load ran. Its whole run counts (start-up included, when the server
   * idles), so CPU shares are divided by this rather than by the wall time: an upper bound, as
   * in the http suite.
   */
  loadSeconds?: number;
  detail?: unknown;
}

interface Sample extends Measured {
  /** Share of one core the measured process used (1 = saturated). */
  serverCpu: number | null;
  /** Share of core 0 busy with anything else: PostgreSQL, Redis, the kernel, other processes. */
  otherCpuCore0: number | null;
  /** Shares by thread group: MainThread (JS), libuv-worker (argon2), V8Worker (GC), ... */
  threads: Record<string, number>;
  /** Cores' worth of CPU all PostgreSQL processes used (they are not pinned). */
  postgresCpu: number;
  /** Share of core 1 busy: the load generator, this script, and whatever else runs there. */
  core1Busy: number | null;
  /** Cores' worth of CPU used by processes outside this benchmark (a shared machine's noise). */
  foreignCpu: number;
  foreignTop: string[];
}

type Window = (edge: 'start' | 'end') => void;

interface Target {
  name: string;
  /** The measured server process, for its CPU time. */
  process?: Running;
  /** durationS: the warm-up passes WARMUP_S; rounds leave it to the target (DURATION_S, logins LOGIN_DURATION_S). */
  run: (window: Window, durationS?: number) => Promise<Measured>;
  /** run() reports its measured window (after logins and warm-up); otherwise the whole run counts. */
  windowed?: boolean;
}

interface Snapshot {
  at: number;
  cpu: number | null;
  core: number | null;
  core1: number | null;
  processes: ProcessCpu;
  threads: Record<string, number>;
}

function snapshot(pid: number | undefined): Snapshot {
  return {
    at: performance.now(),
    cpu: pid === undefined ? null : cpuSeconds(pid),
    core: coreBusySeconds(SERVER_CPU),
    core1: coreBusySeconds(LOAD_CPU),
    processes: processCpu(),
    threads: pid === undefined ? {} : threadCpuSeconds(pid),
  };
}

/** One round; CPU is read over the target's measured window (autocannon: its whole run, see loadSeconds). */
async function measure(target: Target): Promise<Sample> {
  const pid = target.process?.child.pid;
  let start = snapshot(pid);
  let end: Snapshot | undefined;
  const result = await target.run((edge) => {
    if (edge === 'start') start = snapshot(pid);
    else end = snapshot(pid);
  });
  end ??= snapshot(pid);
  const seconds = result.loadSeconds ?? (end.at - start.at) / 1000;
  const share = (a: number | null, b: number | null) =>
    a === null || b === null ? null : Math.round(((b - a) / seconds) * 100) / 100;
  const serverCpu = result.cpu ?? share(start.cpu, end.cpu);
  const coreBusy = share(start.core, end.core);
  const foreign = foreignShare(start.processes, end.processes, seconds);
  return {
    ...result,
    serverCpu,
    otherCpuCore0:
      coreBusy === null || serverCpu === null
        ? null
        : Math.max(0, Math.round((coreBusy - serverCpu) * 100) / 100),
    threads: pid === undefined ? {} : threadShares(start.threads, end.threads, seconds),
    postgresCpu:
      Math.round((cpuDelta(start.processes.postgres, end.processes.postgres) / seconds) * 100) / 100,
    core1Busy: share(start.core1, end.core1),
    foreignCpu: foreign.share,
    foreignTop: foreign.top,
  };
}

function fromAutocannon(result: LoadResult, durationS = DURATION_S): Measured {
  return {
    loadSeconds: durationS,
    perSecond: result.requestsPerSecond,
    latencyP50: result.latencyP50,
    latencyP99: result.latencyP99,
    failures: result.errors + result.timeouts + result.non2xx,
  };
}

interface ClientDetail {
  ok: number;
  slowBursts: ClientLoadResult['slowBursts'];
  windowOpenedAt: string;
  failureKinds: Record<string, number>;
  latencyP90: number;
  latencyMax: number;
}

function fromClients(result: ClientLoadResult): Measured {
  const detail: ClientDetail = {
    ok: result.ok,
    slowBursts: result.slowBursts,
    windowOpenedAt: new Date(result.windowOpenedAt).toISOString(),
    failureKinds: result.failureKinds,
    latencyP90: result.latencyP90,
    latencyMax: result.latencyMax,
  };
  return {
    perSecond: result.perSecond,
    latencyP50: result.latencyP50,
    latencyP99: result.latencyP99,
    failures: result.failures,
    detail,
  };
}

interface Row {
  name: string;
  samples: Sample[];
  perSecond: number;
  latencyP50: number;
  latencyP99: number;
  serverCpu: number | null;
  otherCpuCore0: number | null;
  threads: Record<string, number>;
  postgresCpu: number;
  core1Busy: number | null;
  foreignCpu: number;
  /** perSecond per second of server CPU: what one fully used core would yield (less noise-prone). */
  perCpuSecond: number | null;
  failures: number;
  /** perSecond over the phase's reference row (the floor). */
  ratio: number | null;
}

function summarise(name: string, samples: Sample[], reference?: number): Row {
  const known = (values: (number | null)[]) => values.filter((value): value is number => value !== null);
  const orNull = (values: number[]) => (values.length > 0 ? median(values) : null);
  const perSecond = median(samples.map((s) => s.perSecond));
  const threadNames = new Set(samples.flatMap((s) => Object.keys(s.threads)));
  return {
    name,
    samples,
    perSecond,
    latencyP50: median(samples.map((s) => s.latencyP50)),
    latencyP99: median(samples.map((s) => s.latencyP99)),
    serverCpu: orNull(known(samples.map((s) => s.serverCpu))),
    otherCpuCore0: orNull(known(samples.map((s) => s.otherCpuCore0))),
    threads: Object.fromEntries(
      [...threadNames].map((thread) => [thread, median(samples.map((s) => s.threads[thread] ?? 0))]),
    ),
    postgresCpu: median(samples.map((s) => s.postgresCpu)),
    core1Busy: orNull(known(samples.map((s) => s.core1Busy))),
    foreignCpu: median(samples.map((s) => s.foreignCpu)),
    perCpuSecond: orNull(
      samples.filter((s) => s.serverCpu).map((s) => Math.round(s.perSecond / (s.serverCpu as number))),
    ),
    failures: samples.reduce((sum, s) => sum + s.failures, 0),
    ratio: reference === undefined ? null : Math.round((perSecond / reference) * 1000) / 1000,
  };
}

/** Warm-up, then ROUNDS rounds with the targets in turn (ABAB...); the first target is the reference. */
async function rounds(phase: string, targets: Target[]): Promise<Row[]> {
  const quiet = await waitForQuiet(Math.max(0.5, quietBudgetS));
  quietBudgetS -= quiet.waitedS;
  quietness[phase] = quiet;
  log(`[auth] ${phase}: ${quiet.quiet ? 'cores quiet' : 'cores still busy'} after ${quiet.waitedS} s`);
  for (const target of targets) await target.run(() => {}, WARMUP_S);
  const samples = new Map<Target, Sample[]>(targets.map((target) => [target, []]));
  for (let round = 1; round <= ROUNDS; round++) {
    for (const target of targets) {
      const sample = await measure(target);
      const server = target.process;
      if (server && (server.child.exitCode !== null || server.child.signalCode !== null)) {
        throw new Error(`${target.name}: the server is gone: ${server.describe()}`);
      }
      samples.get(target)?.push(sample);
      log(
        `[auth] ${phase} round ${round}/${ROUNDS} ${target.name.padEnd(34)} ${String(sample.perSecond).padStart(8)}/s` +
          `${Number.isNaN(sample.latencyP50) ? '' : `  p50 ${sample.latencyP50} ms  p99 ${sample.latencyP99} ms`}` +
          `  server CPU ${sample.serverCpu ?? '?'}  other on core 0 ${sample.otherCpuCore0 ?? '?'}` +
          `  PostgreSQL ${sample.postgresCpu}  core 1 ${sample.core1Busy ?? '?'}` +
          `${sample.foreignCpu >= 0.05 ? `  OTHER PROCESSES ${sample.foreignCpu} (${sample.foreignTop.join(', ')})` : ''}` +
          `${sample.failures ? `  FAILURES ${sample.failures} ${JSON.stringify(sample.detail)}` : ''}`,
      );
    }
  }
  const reference = median((samples.get(targets[0] as Target) ?? []).map((s) => s.perSecond));
  return targets.map((target, index) =>
    summarise(target.name, samples.get(target) ?? [], index === 0 ? undefined : reference),
  );
}

// --- the targets ---------------------------------------------------------------------------

const PASSWORD = 'bench-password-long-enough-7Q';
const USERS = {
  login: { email: 'bench-login@example.com', password: PASSWORD },
  session: { email: 'bench-session@example.com', password: PASSWORD },
  refresh: { email: 'bench-refresh@example.com', password: PASSWORD },
};
const loginBody = JSON.stringify(USERS.login);
const loadOptions = (connections: number, durationS = DURATION_S) => ({
  connections,
  pipelining: 1,
  durationS,
});

const loginTarget = (name: string, server: Running): Target => ({
  name,
  process: server,
  run: async (_window, durationS = LOGIN_DURATION_S) =>
    fromAutocannon(
      await runRequestLoad(`${server.origin}/v1/auth/login`, loadOptions(LOGIN_CONCURRENCY, durationS), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: loginBody,
      }),
      durationS,
    ),
});

const rawArgon2Target: Target = {
  name: `raw argon2id verify, ${LOGIN_CONCURRENCY} in flight`,
  windowed: true,
  run: async (window, durationS = LOGIN_DURATION_S) => {
    const result = await runRawArgon2({ concurrency: LOGIN_CONCURRENCY, warmupS: 0.5, durationS }, window);
    return {
      perSecond: result.perSecond,
      latencyP50: Number.NaN,
      latencyP99: Number.NaN,
      failures: 0,
      cpu: result.cpu,
      detail: result,
    };
  },
};

const getTarget = (
  name: string,
  server: Running,
  path: string,
  headers: Record<string, string> = {},
): Target => ({
  name,
  process: server,
  run: async (_window, durationS) =>
    fromAutocannon(
      await runRequestLoad(`${server.origin}${path}`, loadOptions(CONNECTIONS, durationS), { headers }),
      durationS,
    ),
});

const bareTarget = (bare: Running): Target => ({
  name: 'bare Fastify GET /healthz',
  process: bare,
  run: async (_window, durationS) =>
    fromAutocannon(await runLoad(`${bare.origin}/healthz`, loadOptions(CONNECTIONS, durationS)), durationS),
});

const refreshTarget = (name: string, server: Running): Target => ({
  name,
  process: server,
  windowed: true,
  run: async (window, durationS = DURATION_S) =>
    fromClients(
      await runClientLoad(
        {
          mode: 'refresh',
          origin: server.origin,
          users: [USERS.refresh],
          clients: REFRESH_CLIENTS,
          warmupS: 1,
          durationS,
        },
        window,
      ),
    ),
});

// --- phases --------------------------------------------------------------------------------

interface LatencyResult {
  ratePerSecond: number;
  rounds: Sample[];
  latencyP50: number;
  latencyP90: number;
  latencyP99: number;
  latencyMax: number;
  p99OverP50: number;
  failures: number;
  foreignCpu: number;
  /** Profile mode only: slow commits seen by a probe, next to the bursts of slow logins. */
  commitProbe?: {
    commits: number;
    slowCommits: number;
    maxCommitMs: number;
    bursts: (ClientLoadResult['slowBursts'][number] & { at: string; slowCommitsNearby: number[] })[];
  };
}

async function loginPhase(setup: GatehouseSetup, gatehouse: Running, silent: Running | undefined) {
  const targets = [rawArgon2Target, loginTarget('Gatehouse POST /v1/auth/login', gatehouse)];
  if (silent) targets.push(loginTarget('Gatehouse, log silent', silent));
  const rows = await rounds('logins', targets);
  const loginRate = (rows[1] as Row).perSecond;

  // Half the measured rate, open loop: requests due at evenly spaced instants whatever the
  // server does (autocannon -R releases each connection's quota at the top of every second,
  // which would measure a burst, not a rate).
  const rate = Math.max(1, Math.round(loginRate / 2));
  const latencyTarget: Target = {
    name: `login at ${rate}/s`,
    process: gatehouse,
    windowed: true,
    run: async (window, durationS = LATENCY_DURATION_S) =>
      fromClients(
        await runClientLoad(
          { mode: 'login', origin: gatehouse.origin, users: [USERS.login], rate, warmupS: 1, durationS },
          window,
        ),
      ),
  };
  const latencyRounds: Sample[] = [];
  // Profile mode: are bursts of slow logins slow commits? (the probe adds 50 small commits/s)
  const probe = PROFILE ? await startCommitProbe(setup.databaseUrl, setup.schema) : undefined;
  for (let round = 1; round <= LATENCY_ROUNDS; round++) {
    const sample = await measure(latencyTarget);
    latencyRounds.push(sample);
    const detail = sample.detail as ClientDetail;
    log(
      `[auth] login latency round ${round}/${LATENCY_ROUNDS} at ${rate}/s: ${detail.ok} ok  p50 ${sample.latencyP50} ms` +
        `  p90 ${detail.latencyP90} ms  p99 ${sample.latencyP99} ms  max ${detail.latencyMax} ms` +
        `  slow (>3x p50): ${detail.slowBursts.map((b) => `${b.count} at ${b.atMs} ms (max ${b.maxMs})`).join(', ') || 'none'}` +
        `  server CPU ${sample.serverCpu ?? '?'}  other on core 0 ${sample.otherCpuCore0 ?? '?'}` +
        `${sample.foreignCpu >= 0.05 ? `  OTHER PROCESSES ${sample.foreignCpu} (${sample.foreignTop.join(', ')})` : ''}` +
        `${sample.failures ? `  FAILURES ${sample.failures} ${JSON.stringify(detail.failureKinds)}` : ''}`,
    );
  }
  const details = latencyRounds.map((sample) => sample.detail as ClientDetail);
  let commits: LatencyResult['commitProbe'];
  if (probe) {
    const { commits: made, slow } = await probe.stop();
    const bursts = details.flatMap((detail) =>
      detail.slowBursts.map((burst) => {
        const from = Date.parse(detail.windowOpenedAt) + burst.atMs;
        const near = slow.filter((c) => c.at + c.ms >= from - 300 && c.at <= from + burst.spanMs + 300);
        return { ...burst, at: new Date(from).toISOString(), slowCommitsNearby: near.map((c) => c.ms) };
      }),
    );
    commits = {
      commits: made,
      slowCommits: slow.length,
      maxCommitMs: Math.max(0, ...slow.map((c) => c.ms)),
      bursts,
    };
    log(
      `[auth] commit probe: ${made} commits, ${slow.length} over 25 ms (max ${commits.maxCommitMs} ms); ` +
        `slow-login bursts with a slow commit within 300 ms: ${bursts.filter((b) => b.slowCommitsNearby.length).length} of ${bursts.length}`,
    );
  }
  const latency: LatencyResult = {
    ratePerSecond: rate,
    rounds: latencyRounds,
    latencyP50: median(latencyRounds.map((r) => r.latencyP50)),
    latencyP90: median(details.map((d) => d.latencyP90)),
    latencyP99: median(latencyRounds.map((r) => r.latencyP99)),
    latencyMax: median(details.map((d) => d.latencyMax)),
    p99OverP50: 0,
    failures: latencyRounds.reduce((sum, r) => sum + r.failures, 0),
    foreignCpu: median(latencyRounds.map((r) => r.foreignCpu)),
    ...(commits ? { commitProbe: commits } : {}),
  };
  latency.p99OverP50 = Math.round((latency.latencyP99 / latency.latencyP50) * 100) / 100;
  return { rows, latency, main: targets[1] as Target };
}

async function sessionPhase(bare: Running, gatehouse: Running, silent: Running | undefined) {
  const { session, accessToken } = await login(gatehouse.origin, USERS.session.email, USERS.session.password);
  const cookie = { cookie: `gh_session=${session}` };
  const bearer = { authorization: `Bearer ${accessToken}` };
  const sizes = {
    me: await expectOk(`${gatehouse.origin}/v1/me`, cookie),
    sessions: await expectOk(`${gatehouse.origin}/v1/me/sessions`, cookie),
    meBearer: await expectOk(`${gatehouse.origin}/v1/me`, bearer),
  };
  const targets = [
    bareTarget(bare),
    getTarget('Gatehouse GET /v1/me, session cookie', gatehouse, '/v1/me', cookie),
  ];
  if (silent) {
    targets.push(
      getTarget('Gatehouse, log silent', silent, '/v1/me', cookie),
      getTarget('GET /v1/me, Bearer access token', gatehouse, '/v1/me', bearer),
      getTarget('GET /v1/me/sessions, session cookie', gatehouse, '/v1/me/sessions', cookie),
    );
  }
  return { rows: await rounds('session', targets), bodyBytes: sizes, main: targets[1] as Target };
}

async function refreshPhase(bare: Running, gatehouse: Running, silent: Running | undefined) {
  const targets = [bareTarget(bare), refreshTarget('Gatehouse POST /v1/auth/refresh', gatehouse)];
  if (silent) targets.push(refreshTarget('Gatehouse, log silent', silent));
  const rows = await rounds('refresh', targets);
  return { rows, main: targets[1] as Target };
}

/** One extra Gatehouse under --cpu-prof, one round of the phase's load, the main thread's profile summarised. */
async function profilePhase(
  setup: GatehouseSetup,
  phase: string,
  makeTarget: (server: Running) => Target,
): Promise<ProfileSummary> {
  const dir = mkdtempSync(join(setup.env.GATEHOUSE_DATA_DIR ?? '/tmp', 'cpuprofile-'));
  const server = await startGatehouse(setup, { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] });
  try {
    const target = makeTarget(server);
    await target.run(() => {}, WARMUP_S);
    let from = 0;
    let to = 0;
    const micros = () => Number(process.hrtime.bigint() / 1000n);
    from = micros();
    await target.run((edge) => {
      if (edge === 'start') from = micros();
      else to = micros();
    });
    to ||= micros();
    await server.stop();
    const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'));
    if (!file) throw new Error(`${phase}: no CPU profile written`);
    return summariseProfile(join(dir, file), from, to);
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// --- output --------------------------------------------------------------------------------

const pct = (value: number | null) => (value === null ? '' : `${Math.round(value * 100)}%`);
const ratioText = (value: number | null) => (value === null ? 'reference' : `${(value * 100).toFixed(1)}%`);

function table(rows: Row[], unit: string): string {
  const ms = (value: number) => (Number.isNaN(value) ? '' : value);
  return formatTable(
    [
      'target',
      unit,
      'p50 ms',
      'p99 ms',
      'of reference',
      `${unit} per CPU-s`,
      'server CPU',
      'main thread',
      'libuv pool',
      'of which kernel',
      'other CPU core 0',
      'PostgreSQL CPU',
      'core 1 busy',
      'other processes',
      'failures',
    ],
    rows.map((row) => [
      row.name,
      row.perSecond,
      ms(row.latencyP50),
      ms(row.latencyP99),
      ratioText(row.ratio),
      row.perCpuSecond ?? '',
      pct(row.serverCpu),
      pct(row.threads.MainThread ?? null),
      pct(row.threads['libuv-worker'] ?? null),
      pct(row.threads['(kernel)'] ?? null),
      pct(row.otherCpuCore0),
      pct(row.postgresCpu),
      pct(row.core1Busy),
      pct(row.foreignCpu),
      row.failures,
    ]),
  );
}

function profileText(name: string, summary: ProfileSummary): string {
  return [
    `CPU profile, ${name}: main thread ${summary.totalMs} ms sampled, ${summary.idleMs} ms idle`,
    formatTable(
      ['group', 'self ms', 'of busy'],
      summary.groups.map((group) => [group.group, group.selfMs, `${group.shareOfBusy}%`]),
    ),
    formatTable(
      ['function', 'where', 'self ms', 'of busy'],
      summary.functions.map((fn) => [fn.name, fn.where, fn.selfMs, `${fn.shareOfBusy}%`]),
    ),
  ].join('\n');
}

function perfText(name: string, summary: PerfSummary): string {
  const threads = Object.entries(summary.threads)
    .map(([thread, share]) => `${thread} ${share}%`)
    .join(', ');
  return [
    `perf, ${name}: ${summary.samples} on-CPU samples; threads ${threads}; kernel ${summary.kernel}%`,
    formatTable(
      ['work for', 'of samples', 'of which kernel'],
      summary.categories.map((c) => [c.category, `${c.share}%`, `${c.kernel}%`]),
    ),
    formatTable(
      ['innermost user-space frame', 'of samples'],
      summary.topSymbols.map((s) => [s.symbol, `${s.share}%`]),
    ),
  ].join('\n');
}

// --- main ----------------------------------------------------------------------------------

const startedAt = new Date();
const stops: (() => Promise<void>)[] = [];
const results: Record<string, unknown> = {};
const perfResults: Record<string, { sample: Sample; summary: PerfSummary }> = {};
const output: string[] = [];
let failed = false;
const setup = gatehouseSetup(DATABASE_URL, REDIS_URL);
// Run directly and interrupted: stop what we started and drop the schema before leaving.
// (Under bench/run.ts a Ctrl-C SIGKILLs this script; its schema then stays behind: bench_*.)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`[auth] ${signal}: cleaning up`);
    killAllChildren();
    setup.destroy().finally(() => process.exit(130));
  });
}
try {
  log(`[auth] schema ${setup.schema}; creating users`);
  // The first call migrates the fresh schema; the others may then run side by side.
  await createAdmin(setup, USERS.login.email, USERS.login.password);
  await Promise.all([
    createAdmin(setup, USERS.session.email, USERS.session.password),
    createAdmin(setup, USERS.refresh.email, USERS.refresh.password),
  ]);
  const bare = await startBare();
  stops.push(bare.stop);
  const gatehouse = await startGatehouse(setup, PERF ? { nodeArgs: PERF_NODE_ARGS } : {});
  stops.push(async () => {
    await gatehouse.stop();
    removePerfMap(gatehouse.child.pid);
  });
  const perfRound = async (phase: string, target: Target) => {
    if (!PERF) return;
    const dir = mkdtempSync(join(setup.env.GATEHOUSE_DATA_DIR ?? '/tmp', 'perf-'));
    try {
      // Recording covers the measured window only (not the logins that start a refresh round).
      let stopPerf: (() => Promise<void>) | undefined;
      const record = () => {
        stopPerf ??= startPerf(gatehouse.child.pid as number, join(dir, 'perf.data'));
      };
      let stopped: Promise<void> | undefined;
      const recorded: Target = {
        ...target,
        run: (window, durationS) =>
          target.run((edge) => {
            window(edge);
            if (edge === 'start') record();
            else stopped = stopPerf?.();
          }, durationS),
      };
      let sample: Sample;
      try {
        if (!target.windowed) {
          record();
          await sleep(300);
        }
        sample = await measure(recorded);
      } finally {
        await stopped;
        await stopPerf?.();
      }
      const summary = summarisePerf(join(dir, 'perf.data'));
      perfResults[phase] = { sample, summary };
      output.push(`\n${perfText(`${phase} (${target.name}, ${sample.perSecond}/s under perf)`, summary)}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  let silent: Running | undefined;
  if (PROFILE) {
    silent = await startGatehouse(setup, { logLevel: 'silent' });
    stops.push(silent.stop);
  }
  const header =
    `Gatehouse auth paths against PostgreSQL${REDIS_URL ? ' + Redis' : ' (state store in memory)'}; ` +
    `${machine.cpuModel ?? 'unknown CPU'}, ${machine.cpus} CPUs, Node ${machine.node}, load ${loadavg()[0]?.toFixed(1)}; ` +
    `commit ${machine.commit}; ` +
    `${machine.pinning}\nmedians of ${ROUNDS} rounds x ${DURATION_S} s, logins ${LOGIN_DURATION_S} s (warm-up ${WARMUP_S} s)`;
  output.push(header);

  if (PHASES.includes('login')) {
    const { rows, latency, main } = await loginPhase(setup, gatehouse, silent);
    const share = (rows[1] as Row).ratio ?? 0;
    results.logins = { rows, latency, concurrency: LOGIN_CONCURRENCY };
    output.push(
      `\nPassword logins (${LOGIN_CONCURRENCY} concurrent; argon2id m=19456 t=2 p=1; libuv pool 4)\n${table(rows, 'per s')}\n` +
        `logins / raw verifies = ${(share * 100).toFixed(1)}% (target >= ${TARGETS.loginShareOfRaw * 100}%): ${share >= TARGETS.loginShareOfRaw ? 'met' : 'NOT met'}\n` +
        `at half load (${latency.ratePerSecond}/s, open loop, medians of ${LATENCY_ROUNDS} x ${LATENCY_DURATION_S} s): ` +
        `p50 ${latency.latencyP50} ms, p90 ${latency.latencyP90} ms, p99 ${latency.latencyP99} ms, max ${latency.latencyMax} ms; ` +
        `p99 / p50 = ${latency.p99OverP50} (target <= ${TARGETS.p99OverP50}): ${latency.p99OverP50 <= TARGETS.p99OverP50 ? 'met' : 'NOT met'}` +
        `; other processes ${pct(latency.foreignCpu)}${latency.failures ? `; FAILURES ${latency.failures}` : ''}` +
        (latency.commitProbe
          ? `\ncommit probe (50/s): ${latency.commitProbe.slowCommits} of ${latency.commitProbe.commits} commits over 25 ms, ` +
            `max ${latency.commitProbe.maxCommitMs} ms; bursts of slow logins: ` +
            (latency.commitProbe.bursts
              .map(
                (b) =>
                  `${b.count} (max ${b.maxMs} ms) ${b.slowCommitsNearby.length ? `with commits of ${b.slowCommitsNearby.join('/')} ms` : 'no slow commit'}`,
              )
              .join('; ') || 'none')
          : ''),
    );
    if (rows.some((row) => row.failures) || latency.failures) failed = true;
    await perfRound('login', main);
  }
  if (PHASES.includes('session')) {
    const { rows, bodyBytes, main } = await sessionPhase(bare, gatehouse, silent);
    const share = (rows[1] as Row).ratio ?? 0;
    results.session = { rows, bodyBytes, connections: CONNECTIONS };
    output.push(
      `\nSession-cookie validation (${CONNECTIONS} connections; response bytes ${JSON.stringify(bodyBytes)})\n${table(rows, 'req/s')}\n` +
        `GET /v1/me / bare = ${(share * 100).toFixed(1)}% (target >= ${TARGETS.sessionShareOfBare * 100}%): ${share >= TARGETS.sessionShareOfBare ? 'met' : 'NOT met'}`,
    );
    if (rows.some((row) => row.failures)) failed = true;
    await perfRound('session', main);
  }
  if (PHASES.includes('refresh')) {
    const { rows, main } = await refreshPhase(bare, gatehouse, silent);
    const rate = (rows[1] as Row).perSecond;
    results.refresh = { rows, clients: REFRESH_CLIENTS };
    output.push(
      `\nRefresh-token rotation (${REFRESH_CLIENTS} chained clients, one connection each; bare: ${CONNECTIONS} connections)\n${table(rows, 'per s')}\n` +
        `rotations: ${rate}/s (target >= ${TARGETS.refreshPerSecond}/s): ${rate >= TARGETS.refreshPerSecond ? 'met' : 'NOT met'}; ` +
        `${(((rows[1] as Row).ratio ?? 0) * 100).toFixed(1)}% of bare`,
    );
    if (rows.some((row) => row.failures)) failed = true;
    await perfRound('refresh', main);
  }
  if (PERF) results.perf = perfResults;
  if (CPU_PROF) {
    const profiles: Record<string, ProfileSummary> = {};
    if (PHASES.includes('login'))
      profiles.login = await profilePhase(setup, 'login', (s) => loginTarget('login', s));
    if (PHASES.includes('session')) {
      const { session } = await login(gatehouse.origin, USERS.session.email, USERS.session.password);
      profiles.session = await profilePhase(setup, 'session', (s) =>
        getTarget('me', s, '/v1/me', { cookie: `gh_session=${session}` }),
      );
    }
    if (PHASES.includes('refresh'))
      profiles.refresh = await profilePhase(setup, 'refresh', (s) => refreshTarget('refresh', s));
    results.profiles = profiles;
    for (const [name, summary] of Object.entries(profiles)) output.push(`\n${profileText(name, summary)}`);
  }
} catch (error) {
  failed = true;
  log(`[auth] failed: ${(error as Error).stack ?? error}`);
} finally {
  for (const stop of stops.reverse()) await stop().catch(() => {});
  await setup
    .destroy()
    .catch((error: Error) => log(`WARNING: could not drop schema ${setup.schema}: ${error.message}`));
  killAllChildren();
}

process.stdout.write(`${output.join('\n')}\n`);
if (env.BENCH_RESULTS_JSON) {
  writeFileSync(
    env.BENCH_RESULTS_JSON,
    `${JSON.stringify(
      {
        suite: 'auth',
        startedAt: startedAt.toISOString(),
        finishedAt: new Date().toISOString(),
        options: {
          PERF,
          ROUNDS,
          DURATION_S,
          WARMUP_S,
          CONNECTIONS,
          LOGIN_CONCURRENCY,
          REFRESH_CLIENTS,
          PHASES,
          PROFILE,
          CPU_PROF,
        },
        backend: { database: 'PostgreSQL', state: REDIS_URL ? 'Redis' : 'memory' },
        machine,
        quietBeforePhases: quietness,
        targets: TARGETS,
        ...results,
      },
      null,
      2,
    )}\n`,
  );
}
process.exitCode = failed ? 1 : 0;
