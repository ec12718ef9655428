import { type ChildProcess, execFileSync, type SpawnOptions, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { cpus } from 'node:os';

/** Core of the measured server (and of single-process bench scripts). */
export const SERVER_CPU = 0;
/** Core of the load generator and of this orchestrator. */
export const LOAD_CPU = 1;

export interface Pinning {
  enabled: boolean;
  /** Why pinning is off; printed as a warning. */
  warning?: string;
}

let pinning: Pinning | undefined;

/** Pinning needs two cores and util-linux `taskset`; without them results are noisier, not wrong. */
export function checkPinning(): Pinning {
  if (pinning) return pinning;
  // cpus(), not availableParallelism(): a bench script run pinned to one core still re-pins its children.
  if (cpus().length < 2) {
    pinning = { enabled: false, warning: `only ${cpus().length} CPU on this machine: not pinning` };
  } else {
    try {
      execFileSync('taskset', ['-c', String(LOAD_CPU), 'true'], { stdio: 'ignore' });
      pinning = { enabled: true };
    } catch {
      pinning = {
        enabled: false,
        warning:
          'taskset (util-linux) missing or not permitted: server and load generator share cores, results are noisier',
      };
    }
  }
  if (pinning.warning) process.stderr.write(`WARNING: ${pinning.warning}\n`);
  return pinning;
}

/** Moves this orchestrator (all its threads) to the load generator's core, off the server's core. */
export function pinSelf(): void {
  if (!checkPinning().enabled) return;
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(LOAD_CPU), String(process.pid)], { stdio: 'ignore' });
  } catch {
    process.stderr.write('WARNING: could not pin the bench orchestrator itself\n');
  }
}

const children = new Set<ChildProcess>();

/** Set on Ctrl-C / SIGTERM: suites stop starting new work and unwind through their cleanups. */
export const interruption = { requested: false };

/**
 * Stops everything we started. SIGTERM lets servers and bench scripts clean up after themselves
 * (a script's own children, a schema); SIGKILL, on exit, is the last resort.
 */
export function killAllChildren(signal: NodeJS.Signals = 'SIGKILL'): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  }
}
process.on('exit', () => killAllChildren('SIGKILL'));

/**
 * Spawns `node <args>` pinned to one core. taskset execs node, so the child's pid is the node
 * process itself (what /proc/<pid>/status must describe).
 */
export function spawnNode(cpu: number, args: string[], options: SpawnOptions): ChildProcess {
  const [command, argv] = checkPinning().enabled
    ? ['taskset', ['-c', String(cpu), process.execPath, ...args]]
    : [process.execPath, args];
  const child = spawn(command, argv, options);
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** One GET on a fresh connection (no keep-alive socket left to hold the server open). */
function probe(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: 2000 }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    });
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', reject);
    req.end();
  });
}

/** Collects a child's stderr (bounded) for error messages. */
export function captureStderr(child: ChildProcess): () => string {
  let text = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    text = (text + chunk).slice(-20_000);
  });
  return () => text;
}

export async function waitUntilServing(
  child: ChildProcess,
  url: string,
  output: () => string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `${url}: server exited (${child.exitCode ?? child.signalCode}) before serving:\n${output()}`,
      );
    }
    if ((await probe(url).catch(() => 0)) === 200) return;
    if (Date.now() > deadline) throw new Error(`${url}: not serving after ${timeoutMs} ms:\n${output()}`);
    await sleep(100);
  }
}

/** SIGTERM (graceful shutdown), then SIGKILL if it takes longer than timeoutMs. */
export async function stopProcess(child: ChildProcess, timeoutMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

/** Resident set size in MB (VmRSS), or null when the process is gone. */
export function rssMb(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Math.round((Number(match[1]) / 1024) * 10) / 10 : null;
  } catch {
    return null;
  }
}

let clockTicks: number | undefined;

function ticksPerSecond(): number {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return clockTicks;
}

/** CPU seconds (user + system) a process has used so far, or null when unreadable. */
export function cpuSeconds(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const clockTicks = ticksPerSecond();
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm) " start at field 3; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / clockTicks;
  } catch {
    return null;
  }
}

/** Busy seconds (anything but idle and iowait) of one core so far, from /proc/stat. */
export function coreBusySeconds(cpu: number): number | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8')
      .split('\n')
      .find((row) => row.startsWith(`cpu${cpu} `));
    if (!line) return null;
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    const busy = [user, nice, system, irq, softirq, steal].reduce<number>(
      (sum, value) => sum + (value ?? 0),
      0,
    );
    return busy / ticksPerSecond();
  } catch {
    return null;
  }
}

/** Busy share (0..1) of each core over a short window. */
async function coreLoad(cpuIds: number[], windowMs: number): Promise<number[]> {
  const before = cpuIds.map(coreBusySeconds);
  await sleep(windowMs);
  const after = cpuIds.map(coreBusySeconds);
  return cpuIds.map((_, i) => ((after[i] ?? 0) - (before[i] ?? 0)) / (windowMs / 1000));
}

/**
 * Waits (at most maxWaitS) until both benchmark cores are nearly idle, so that other work on a
 * shared machine (a test run, a build) does not land inside a measured round. Returns the
 * seconds waited and whether the machine became quiet.
 */
export async function waitForQuiet(
  maxWaitS: number,
  threshold = 0.15,
): Promise<{ waitedS: number; quiet: boolean }> {
  const started = performance.now();
  for (;;) {
    const load = await coreLoad([SERVER_CPU, LOAD_CPU], 500);
    const waitedS = Math.round((performance.now() - started) / 100) / 10;
    if (load.every((share) => share < threshold)) return { waitedS, quiet: true };
    if (waitedS >= maxWaitS) return { waitedS, quiet: false };
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
