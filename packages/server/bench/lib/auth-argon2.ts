// The floor under password logins: raw @node-rs/argon2 verify() of a hash made by Gatehouse's
// own PasswordHasher (same argon2id parameters), with `concurrency` verifies always in flight
// on the libuv thread pool (default size 4), as the server runs them under concurrent logins.
// Runs as its own process on the server core (runRawArgon2); one JSON line on stdout.
import { verify } from '@node-rs/argon2';
import { PasswordHasher } from '../../src/identity/passwords/password-hasher.ts';
import { announceWindow, watchWindow } from './auth-client-load.ts';
import { SERVER_CPU, spawnNode } from './processes.ts';

export interface RawArgon2Config {
  concurrency: number;
  warmupS: number;
  durationS: number;
}

export interface RawArgon2Result {
  /** Verifies completed inside the window, per second. */
  perSecond: number;
  verifies: number;
  /** CPU seconds of this process (all threads) per window second. */
  cpu: number;
  params: { memoryKiB: number; iterations: number; parallelism: number };
  threadpool: string;
}

async function measure(config: RawArgon2Config): Promise<RawArgon2Result> {
  const password = 'correct horse battery staple 7';
  const hasher = new PasswordHasher();
  const hash = await hasher.hash(password);
  const start = performance.now();
  const windowStart = start + config.warmupS * 1000;
  const windowEnd = windowStart + config.durationS * 1000;
  let verifies = 0;
  // CPU time is read when the window opens and closes (verifies still in flight finish later).
  let cpuAtStart: NodeJS.CpuUsage | undefined;
  let cpuInWindow: NodeJS.CpuUsage | undefined;
  setTimeout(() => {
    cpuAtStart = process.cpuUsage();
  }, windowStart - start);
  setTimeout(() => {
    cpuInWindow = process.cpuUsage(cpuAtStart);
  }, windowEnd - start);
  announceWindow(windowStart, windowEnd);
  await Promise.all(
    Array.from({ length: config.concurrency }, async () => {
      while (performance.now() < windowEnd) {
        if (!(await verify(hash, password))) throw new Error('verify returned false');
        const now = performance.now();
        if (now >= windowStart && now < windowEnd) verifies++;
      }
    }),
  );
  // The last verifies end after the window: the timers above have fired by now.
  const cpu = cpuInWindow ?? process.cpuUsage(cpuAtStart);
  return {
    perSecond: Math.round((verifies / config.durationS) * 10) / 10,
    verifies,
    cpu: Math.round(((cpu.user + cpu.system) / 1e6 / config.durationS) * 100) / 100,
    params: { ...hasher.params },
    threadpool: process.env.UV_THREADPOOL_SIZE ?? '4 (default)',
  };
}

/** Runs this file as a process on the server core. */
export function runRawArgon2(
  config: RawArgon2Config,
  onWindow: (edge: 'start' | 'end') => void = () => {},
): Promise<RawArgon2Result> {
  return new Promise((resolve, reject) => {
    const child = spawnNode(SERVER_CPU, [import.meta.filename, JSON.stringify(config)], {
      // Like the server's: no UV_THREADPOOL_SIZE, so the same default pool of 4.
      env: { PATH: process.env.PATH },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    const stderr = watchWindow(child, onWindow);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code !== 0) reject(new Error(`raw argon2 exited with ${code ?? signal}: ${stderr()}`));
      else resolve(JSON.parse(stdout) as RawArgon2Result);
    });
  });
}

if (process.argv[1] === import.meta.filename) {
  const result = await measure(JSON.parse(process.argv[2] ?? '{}') as RawArgon2Config);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
