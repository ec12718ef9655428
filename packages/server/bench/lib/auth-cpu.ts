// Where a server's CPU time goes: per-thread CPU from /proc (the main thread vs the libuv pool
// that runs argon2), and a summary of a V8 --cpu-prof profile (main thread only).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

let clockTicks: number | undefined;

/**
 * CPU seconds by thread name (MainThread, libuv-worker, V8Worker, ...) so far, plus '(kernel)':
 * the system time of all threads (syscalls: for a server, mostly loopback TCP). {} when unreadable.
 */
export function threadCpuSeconds(pid: number | undefined): Record<string, number> {
  const totals: Record<string, number> = {};
  if (pid === undefined) return totals;
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  const ticks = clockTicks;
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return totals;
  }
  for (const task of tasks) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${task}/comm`, 'utf8').trim();
      const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      totals[name] = (totals[name] ?? 0) + (Number(fields[11]) + Number(fields[12])) / ticks;
      totals['(kernel)'] = (totals['(kernel)'] ?? 0) + Number(fields[12]) / ticks;
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return totals;
}

/** after - before, per thread name, divided by seconds: the share of a core each group used. */
export function threadShares(
  before: Record<string, number>,
  after: Record<string, number>,
  seconds: number,
): Record<string, number> {
  const shares: Record<string, number> = {};
  for (const [name, value] of Object.entries(after)) {
    shares[name] = Math.round(((value - (before[name] ?? 0)) / seconds) * 100) / 100;
  }
  return shares;
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** Main-thread ms sampled inside the window, idle included. */
  totalMs: number;
  idleMs: number;
  functions: { name: string; where: string; selfMs: number; shareOfBusy: number }[];
  groups: { group: string; selfMs: number; shareOfBusy: number }[];
}

const SERVER_ROOT = fileURLToPath(new URL('../..', import.meta.url));

function where(url: string, line: number): string {
  if (!url) return '';
  const path = url.startsWith('file://') ? relative(SERVER_ROOT, fileURLToPath(url)) : url;
  return `${path.replace(/^(\.\.\/)+node_modules\//, '')}:${line + 1}`;
}

/** Who the time belongs to: a package, a source folder of Gatehouse, Node itself, or V8. */
function groupOf(node: ProfileNode): string {
  const { url, functionName } = node.callFrame;
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node: internals';
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (modules) return modules[1] as string;
  const source = /packages\/server\/(src\/[^/]+)/.exec(url);
  return source ? (source[1] as string) : url;
}

/**
 * Self time per function and per group from a .cpuprofile, counting only samples taken between
 * fromUs and toUs (V8's clock: microseconds of CLOCK_MONOTONIC, as process.hrtime()).
 */
export function summariseProfile(
  file: string,
  fromUs = 0,
  toUs = Number.POSITIVE_INFINITY,
  top = 15,
): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const self = new Map<number, number>();
  let time = profile.startTime;
  let totalUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0;
    time += delta;
    if (time < fromUs || time > toUs) continue;
    const id = profile.samples[i] as number;
    // A sample stands for the interval up to the next one.
    const span = profile.timeDeltas[i + 1] ?? delta;
    self.set(id, (self.get(id) ?? 0) + span);
    totalUs += span;
  }
  const byFunction = new Map<string, { name: string; where: string; us: number }>();
  const byGroup = new Map<string, number>();
  let idleUs = 0;
  for (const [id, us] of self) {
    const node = nodes.get(id) as ProfileNode;
    const name = node.callFrame.functionName || '(anonymous)';
    if (name === '(idle)') {
      idleUs += us;
      continue;
    }
    const location = where(node.callFrame.url, node.callFrame.lineNumber);
    const key = `${name} ${location}`;
    const entry = byFunction.get(key) ?? { name, where: location, us: 0 };
    entry.us += us;
    byFunction.set(key, entry);
    const group = groupOf(node);
    byGroup.set(group, (byGroup.get(group) ?? 0) + us);
  }
  const busyUs = totalUs - idleUs || 1;
  const ms = (us: number) => Math.round(us / 100) / 10;
  const share = (us: number) => Math.round((us / busyUs) * 1000) / 10;
  return {
    totalMs: ms(totalUs),
    idleMs: ms(idleUs),
    functions: [...byFunction.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((entry) => ({
        name: entry.name,
        where: entry.where,
        selfMs: ms(entry.us),
        shareOfBusy: share(entry.us),
      })),
    groups: [...byGroup.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([group, us]) => ({ group, selfMs: ms(us), shareOfBusy: share(us) })),
  };
}

type PerProcess = Map<number, { name: string; seconds: number }>;

export interface ProcessCpu {
  /** CPU seconds so far of each PostgreSQL process (not pinned: they run on either core). */
  postgres: PerProcess;
  redis: PerProcess;
  /**
   * Of every other user-space process outside this benchmark's own process tree (its parent,
   * itself and its descendants): other people's work on a shared machine. Per pid, for naming
   * the worst offenders.
   */
  foreign: PerProcess;
}

/**
 * CPU seconds used between two readings by the processes of the second one. A process that
 * ended in between is missed (its time cannot be read any more): a lower bound.
 */
export function cpuDelta(before: PerProcess, after: PerProcess): number {
  let total = 0;
  for (const [pid, stat] of after) total += Math.max(0, stat.seconds - (before.get(pid)?.seconds ?? 0));
  return total;
}

/** CPU time of the processes that share the machine with the benchmark, read from /proc. */
export function processCpu(): ProcessCpu {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  const stats = new Map<number, { name: string; ppid: number; seconds: number }>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      stats.set(Number(entry), {
        name,
        ppid: Number(fields[1]),
        seconds: (Number(fields[11]) + Number(fields[12])) / clockTicks,
      });
    } catch {
      // Gone between the listing and the read.
    }
  }
  // Ours: the parent (bench/run.ts), this process and everything below it.
  const ours = new Set([process.pid, process.ppid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, stat] of stats) {
      if (!ours.has(pid) && ours.has(stat.ppid) && stat.ppid !== process.ppid) {
        ours.add(pid);
        grew = true;
      }
    }
  }
  const result: ProcessCpu = { postgres: new Map(), redis: new Map(), foreign: new Map() };
  for (const [pid, stat] of stats) {
    if (stat.name === 'postgres') result.postgres.set(pid, stat);
    else if (stat.name === 'redis-server') result.redis.set(pid, stat);
    // Kernel threads (children of kthreadd, pid 2) do the network work of every process.
    else if (!ours.has(pid) && pid !== 2 && stat.ppid !== 2) result.foreign.set(pid, stat);
  }
  return result;
}

/** Cores' worth of CPU foreign processes used between two readings, and the three busiest. */
export function foreignShare(
  before: ProcessCpu,
  after: ProcessCpu,
  seconds: number,
): { share: number; top: string[] } {
  let total = 0;
  const used: { name: string; seconds: number }[] = [];
  for (const [pid, stat] of after.foreign) {
    const delta = stat.seconds - (before.foreign.get(pid)?.seconds ?? 0);
    if (delta <= 0) continue;
    total += delta;
    used.push({ name: `${stat.name}[${pid}]`, seconds: delta });
  }
  return {
    share: Math.round((total / seconds) * 100) / 100,
    top: used
      .sort((a, b) => b.seconds - a.seconds)
      .slice(0, 3)
      .map((entry) => `${entry.name} ${Math.round((entry.seconds / seconds) * 100)}%`),
  };
}
