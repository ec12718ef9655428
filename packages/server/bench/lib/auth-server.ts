// Processes and HTTP calls of the auth suite (bench/auth.bench.ts): the real Gatehouse on a
// throw-away PostgreSQL schema, its users, and the bare Fastify baseline of the http suite.
import { type ChildProcess, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import {
  captureStderr,
  freePort,
  SERVER_CPU,
  spawnNode,
  stopProcess,
  waitUntilServing,
} from './processes.ts';

const SERVER_ROOT = join(import.meta.dirname, '..', '..');
const CLI = join(SERVER_ROOT, 'bin', 'gatehouse.js');
const BARE_SERVER = join(import.meta.dirname, 'bare-server.ts');

export interface Running {
  /** http://127.0.0.1:port */
  origin: string;
  child: ChildProcess;
  stop: () => Promise<void>;
  /** The tail of its stderr, and how it exited if it has. */
  describe: () => string;
}

function running(origin: string, child: ChildProcess, output: () => string): Running {
  return {
    origin,
    child,
    stop: () => stopProcess(child),
    describe: () => {
      const exit = child.exitCode ?? child.signalCode;
      return `${exit === null ? 'running' : `exited (${exit})`}; stderr: ${output().slice(-3000) || '(empty)'}`;
    },
  };
}

/** bench/lib/bare-server.ts (the http suite's baseline: Fastify, one GET /healthz), on the server core. */
export async function startBare(): Promise<Running> {
  const port = await freePort();
  const child = spawnNode(SERVER_CPU, [BARE_SERVER], {
    cwd: SERVER_ROOT,
    env: { PATH: process.env.PATH, PORT: String(port), BENCH_VARIANT: 'bare' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const origin = `http://127.0.0.1:${port}`;
  const output = captureStderr(child);
  await waitUntilServing(child, `${origin}/healthz`, output);
  return running(origin, child, output);
}

export interface GatehouseSetup {
  databaseUrl: string;
  redisUrl?: string;
  /** Created by the first start, dropped by destroy(). */
  schema: string;
  env: NodeJS.ProcessEnv;
  /** Drops the schema and the data directory. */
  destroy: () => Promise<void>;
}

/** Environment of `gatehouse start` / `gatehouse admin` on a fresh schema (GATEHOUSE_BENCH_* untouched). */
export function gatehouseSetup(databaseUrl: string, redisUrl: string | undefined): GatehouseSetup {
  const schema = `bench_${randomBytes(6).toString('hex')}`;
  // Unused with PostgreSQL, but keeps any stray file out of the working tree.
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-auth-'));
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOST: '127.0.0.1',
    DATABASE_URL: databaseUrl,
    GATEHOUSE_DATABASE_SCHEMA: schema,
    GATEHOUSE_SECRET: randomBytes(36).toString('base64'), // 48 characters
    GATEHOUSE_DATA_DIR: dataDir,
    GATEHOUSE_LOG_LEVEL: 'info',
    // Only failures count against it; the benchmark logs in successfully. Raised all the same.
    GATEHOUSE_LOGIN_MAX_FAILURES: '100',
  };
  if (redisUrl) env.REDIS_URL = redisUrl;
  return {
    databaseUrl,
    ...(redisUrl ? { redisUrl } : {}),
    schema,
    env,
    destroy: async () => {
      rmSync(dataDir, { recursive: true, force: true });
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}

/** `gatehouse admin create --email E --password-stdin` (migrates the schema on first use). */
export function createAdmin(setup: GatehouseSetup, email: string, password: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      process.execPath,
      [CLI, 'admin', 'create', '--email', email, '--password-stdin'],
      { cwd: SERVER_ROOT, env: setup.env },
      (error, _stdout, stderr) => {
        if (error) reject(new Error(`gatehouse admin create ${email} failed: ${stderr || error.message}`));
        else resolve();
      },
    );
    child.stdin?.end(`${password}\n`);
  });
}

/**
 * `gatehouse start` as operators run it, pinned to the server core. stdout (the JSON access log)
 * is discarded as in the http suite; nodeArgs go to node itself (e.g. --cpu-prof).
 */
export async function startGatehouse(
  setup: GatehouseSetup,
  options: { logLevel?: string; nodeArgs?: string[] } = {},
): Promise<Running> {
  const port = await freePort();
  const env = { ...setup.env, PORT: String(port), GATEHOUSE_LOG_LEVEL: options.logLevel ?? 'info' };
  const child = spawnNode(SERVER_CPU, [...(options.nodeArgs ?? []), CLI, 'start'], {
    cwd: SERVER_ROOT,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const origin = `http://127.0.0.1:${port}`;
  const output = captureStderr(child);
  await waitUntilServing(child, `${origin}/healthz`, output);
  return running(origin, child, output);
}

export interface Login {
  accessToken: string;
  refreshToken: string;
  /** Value of the gh_session cookie. */
  session: string;
}

/** POST /v1/auth/login; throws unless 200 with tokens and a session cookie. */
export async function login(origin: string, email: string, password: string): Promise<Login> {
  const response = await fetch(`${origin}/v1/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  const body = (await response.json()) as { access_token?: string; refresh_token?: string };
  const session = response.headers
    .getSetCookie()
    .map((cookie) => /^gh_session=([^;]+)/.exec(cookie)?.[1])
    .find(Boolean);
  if (response.status !== 200 || !body.access_token || !body.refresh_token || !session) {
    throw new Error(`login ${email}: ${response.status} ${JSON.stringify(body)}`);
  }
  return { accessToken: body.access_token, refreshToken: body.refresh_token, session };
}

/** GET with headers; throws unless the status is 200. Returns the body's length. */
export async function expectOk(url: string, headers: Record<string, string>): Promise<number> {
  const response = await fetch(url, { headers });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`GET ${url}: ${response.status} ${text.slice(0, 300)}`);
  return text.length;
}
