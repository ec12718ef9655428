import { createRequire } from 'node:module';
import { LOAD_CPU, spawnNode } from './processes.ts';

const AUTOCANNON_CLI = createRequire(import.meta.url).resolve('autocannon');

export interface LoadOptions {
  connections: number;
  pipelining: number;
  durationS: number;
}

export interface LoadResult {
  requestsPerSecond: number;
  /** Latencies in ms; autocannon records whole milliseconds. */
  latencyP50: number;
  latencyP99: number;
  latencyMean: number;
  requests: number;
  errors: number;
  timeouts: number;
  non2xx: number;
}

interface AutocannonJson {
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  requests: { total: number };
  latency: { p50: number; p99: number; mean: number };
}

/** Runs autocannon as its own process on the load core and returns its JSON summary. */
export function runLoad(url: string, options: LoadOptions): Promise<LoadResult> {
  return autocannon([
    '-c',
    String(options.connections),
    '-p',
    String(options.pipelining),
    '-d',
    String(options.durationS),
    url,
  ]);
}

/** What runRequestLoad sends instead of a plain GET. */
export interface LoadRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
}

/** runLoad with a method, headers and a body (the same request every time). */
export function runRequestLoad(url: string, options: LoadOptions, request: LoadRequest): Promise<LoadResult> {
  const args = [
    '-c',
    String(options.connections),
    '-p',
    String(options.pipelining),
    '-d',
    String(options.durationS),
  ];
  if (request.method) args.push('-m', request.method);
  // autocannon splits each header at its first ':' or '='.
  for (const [name, value] of Object.entries(request.headers ?? {})) args.push('-H', `${name}:${value}`);
  if (request.body !== undefined) args.push('-b', request.body);
  return autocannon([...args, url]);
}

function autocannon(options: string[]): Promise<LoadResult> {
  const args = [AUTOCANNON_CLI, '-j', '-n', ...options];
  return new Promise((resolve, reject) => {
    const child = spawnNode(LOAD_CPU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-5000);
    });
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code !== 0) {
        reject(new Error(`autocannon exited with ${code ?? signal}: ${stderr}`));
        return;
      }
      try {
        const json = JSON.parse(stdout) as AutocannonJson;
        resolve({
          requestsPerSecond: Math.round(json.requests.total / json.duration),
          latencyP50: json.latency.p50,
          latencyP99: json.latency.p99,
          latencyMean: json.latency.mean,
          requests: json.requests.total,
          errors: json.errors,
          timeouts: json.timeouts,
          non2xx: json.non2xx,
        });
      } catch (error) {
        reject(
          new Error(`unreadable autocannon output (${(error as Error).message}): ${stdout.slice(0, 500)}`),
        );
      }
    });
  });
}
