// Load generator of the auth suite for what autocannon cannot do; runs as its own process on the
// load core (started by runClientLoad), one JSON line on stdout. Modes:
//   refresh  N clients, each with its own keep-alive connection: log in once, then
//            refresh, refresh, ... each request presenting the refresh_token of the previous
//            response (tokens are single-use: a reused one would revoke the family).
//   login    open-loop logins at a fixed rate (request i is due at start + i/rate, evenly spaced),
//            latency measured from when the request was due, so a server that falls behind
//            is charged for the queueing (no coordinated omission).
// Only responses that complete inside the measured window (after the warm-up) are counted;
// every non-200 response anywhere is a failure.
import type { ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { LOAD_CPU, spawnNode } from './processes.ts';

export interface ClientLoadConfig {
  mode: 'refresh' | 'login';
  origin: string;
  users: { email: string; password: string }[];
  warmupS: number;
  durationS: number;
  /** refresh: concurrent clients (one connection each). */
  clients?: number;
  /** login: requests per second. */
  rate?: number;
}

export interface ClientLoadResult {
  mode: ClientLoadConfig['mode'];
  /** 200 responses completed inside the window, per second. */
  perSecond: number;
  ok: number;
  failures: number;
  /** Status code (or error message) -> count, over the whole run. */
  failureKinds: Record<string, number>;
  /** ms, responses inside the window. */
  latencyP50: number;
  latencyP90: number;
  latencyP99: number;
  latencyMax: number;
  /** Wall-clock time the window opened (ms since the epoch), to line bursts up with other logs. */
  windowOpenedAt: number;
  /** Bursts of responses slower than 3x the median (ms after the window opened). */
  slowBursts: { atMs: number; spanMs: number; count: number; maxMs: number }[];
  windowS: number;
}

const WINDOW_START = '@@window-start';
const WINDOW_END = '@@window-end';

/** Child side: tells the parent (on stderr) when the measured window opens and closes. */
export function announceWindow(windowStart: number, windowEnd: number): void {
  const now = performance.now();
  setTimeout(() => process.stderr.write(`${WINDOW_START}\n`), windowStart - now);
  setTimeout(() => process.stderr.write(`${WINDOW_END}\n`), windowEnd - now);
}

/** Parent side: calls onWindow as the child announces its window; returns the child's stderr tail. */
export function watchWindow(child: ChildProcess, onWindow: (edge: 'start' | 'end') => void): () => string {
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    if (chunk.includes(WINDOW_START)) onWindow('start');
    if (chunk.includes(WINDOW_END)) onWindow('end');
    stderr = (stderr + chunk).slice(-5000);
  });
  return () => stderr;
}

interface Reply {
  status: number;
  body: string;
}

function post(agent: Agent, origin: string, path: string, payload: unknown): Promise<Reply> {
  const data = JSON.stringify(payload);
  return new Promise((resolve, reject) => {
    const req = request(
      `${origin}${path}`,
      {
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.once('error', reject);
      },
    );
    req.once('error', reject);
    req.end(data);
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return Math.round((sorted[Math.max(0, index)] as number) * 100) / 100;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function generate(config: ClientLoadConfig): Promise<ClientLoadResult> {
  const latencies: number[] = [];
  /** [ms after the window opened, latency ms] of every counted response, to find stalls. */
  const timeline: [number, number][] = [];
  const failureKinds: Record<string, number> = {};
  let ok = 0;
  let failures = 0;
  const fail = (kind: string) => {
    failures++;
    failureKinds[kind] = (failureKinds[kind] ?? 0) + 1;
  };
  let windowStart = Number.POSITIVE_INFINITY;
  let windowEnd = Number.POSITIVE_INFINITY;
  const record = (sentAt: number, status: number) => {
    const now = performance.now();
    if (status !== 200) {
      fail(String(status));
      return;
    }
    if (now >= windowStart && now < windowEnd) {
      ok++;
      latencies.push(now - sentAt);
      timeline.push([Math.round(sentAt - windowStart), Math.round((now - sentAt) * 10) / 10]);
    }
  };
  const user = (i: number) => config.users[i % config.users.length] as { email: string; password: string };

  if (config.mode === 'refresh') {
    const clients = config.clients ?? 32;
    const agents = Array.from({ length: clients }, () => new Agent({ keepAlive: true, maxSockets: 1 }));
    // Log every client in first (not measured), then start all chains together.
    const tokens = await Promise.all(
      agents.map(async (agent, i) => {
        const reply = await post(agent, config.origin, '/v1/auth/login', user(i));
        if (reply.status !== 200) throw new Error(`login: ${reply.status} ${reply.body.slice(0, 300)}`);
        return (JSON.parse(reply.body) as { refresh_token: string }).refresh_token;
      }),
    );
    const start = performance.now();
    windowStart = start + config.warmupS * 1000;
    windowEnd = windowStart + config.durationS * 1000;
    // The parent reads the server's CPU time when the window opens and closes.
    announceWindow(windowStart, windowEnd);
    await Promise.all(
      agents.map(async (agent, i) => {
        let token = tokens[i] as string;
        while (performance.now() < windowEnd) {
          const sentAt = performance.now();
          try {
            const reply = await post(agent, config.origin, '/v1/auth/refresh', { refresh_token: token });
            record(sentAt, reply.status);
            if (reply.status === 200) {
              token = (JSON.parse(reply.body) as { refresh_token: string }).refresh_token;
            } else {
              // The chain is broken (family revoked?): start a new one, so one failure is one count.
              const again = await post(agent, config.origin, '/v1/auth/login', user(i));
              if (again.status !== 200) throw new Error(`login: ${again.status}`);
              token = (JSON.parse(again.body) as { refresh_token: string }).refresh_token;
            }
          } catch (error) {
            fail((error as Error).message);
            await sleep(10);
          }
        }
      }),
    );
    for (const agent of agents) agent.destroy();
  } else {
    const rate = config.rate ?? 10;
    const agent = new Agent({ keepAlive: true, maxSockets: 256 });
    const start = performance.now() + 50;
    windowStart = start + config.warmupS * 1000;
    windowEnd = windowStart + config.durationS * 1000;
    const total = Math.floor(((windowEnd - start) / 1000) * rate);
    announceWindow(windowStart, windowEnd);
    const inFlight: Promise<void>[] = [];
    for (let i = 0; i < total; i++) {
      const due = start + (i * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      inFlight.push(
        post(agent, config.origin, '/v1/auth/login', user(i)).then(
          (reply) => record(due, reply.status),
          (error: Error) => fail(error.message),
        ),
      );
    }
    await Promise.all(inFlight);
    agent.destroy();
  }

  latencies.sort((a, b) => a - b);
  // Responses slower than 3x the median, grouped into bursts (sent within 250 ms of each
  // other): one burst of many slow responses is a stall (GC, a slow commit), not queueing.
  const p50 = percentile(latencies, 50);
  const bursts: ClientLoadResult['slowBursts'] = [];
  for (const [at, latency] of timeline) {
    if (latency <= 3 * p50) continue;
    const last = bursts.at(-1);
    if (last && at - (last.atMs + last.spanMs) <= 250) {
      last.count++;
      last.spanMs = at - last.atMs;
      last.maxMs = Math.max(last.maxMs, latency);
    } else bursts.push({ atMs: at, spanMs: 0, count: 1, maxMs: latency });
  }
  return {
    mode: config.mode,
    perSecond: Math.round((ok / config.durationS) * 10) / 10,
    ok,
    failures,
    failureKinds,
    latencyP50: percentile(latencies, 50),
    latencyP90: percentile(latencies, 90),
    latencyP99: percentile(latencies, 99),
    latencyMax: percentile(latencies, 100),
    windowOpenedAt: Math.round(Date.now() - (performance.now() - windowStart)),
    slowBursts: bursts,
    windowS: config.durationS,
  };
}

/** Runs this file as a process on the load core and returns its result; calls onWindow('start' | 'end'). */
export function runClientLoad(
  config: ClientLoadConfig,
  onWindow: (edge: 'start' | 'end') => void = () => {},
): Promise<ClientLoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawnNode(LOAD_CPU, [import.meta.filename, JSON.stringify(config)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    const stderr = watchWindow(child, onWindow);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code !== 0) reject(new Error(`client load exited with ${code ?? signal}: ${stderr()}`));
      else resolve(JSON.parse(stdout) as ClientLoadResult);
    });
  });
}

if (process.argv[1] === import.meta.filename) {
  const result = await generate(JSON.parse(process.argv[2] ?? '{}') as ClientLoadConfig);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
