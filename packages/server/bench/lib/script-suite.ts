import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SERVER_CPU, spawnNode } from './processes.ts';

const BENCH_DIR = join(import.meta.dirname, '..');
const SUFFIX = '.bench.ts';

/** Names of the `bench/<name>.bench.ts` scripts, sorted. */
export function scriptSuites(): string[] {
  return readdirSync(BENCH_DIR)
    .filter((file) => file.endsWith(SUFFIX))
    .map((file) => file.slice(0, -SUFFIX.length))
    .sort();
}

export interface ScriptResult {
  exitCode: number | null;
  durationS: number;
}

/**
 * Runs `bench/<name>.bench.ts` pinned to the server core, passing its stdout through. The
 * script may write its own machine-readable results to the file named by BENCH_RESULTS_JSON;
 * when it does not, that file gets its exit code and captured stdout.
 */
export function runScriptSuite(name: string, resultsPath: string): Promise<ScriptResult> {
  const file = join(BENCH_DIR, `${name}${SUFFIX}`);
  rmSync(resultsPath, { force: true });
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawnNode(SERVER_CPU, [file], {
      cwd: join(BENCH_DIR, '..'),
      env: { ...process.env, BENCH_RESULTS_JSON: resultsPath },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      process.stdout.write(chunk);
      stdout += chunk;
    });
    child.once('error', reject);
    child.once('close', (code, signal) => {
      const durationS = Math.round((performance.now() - started) / 100) / 10;
      const exitCode = code ?? (signal ? 128 : null);
      if (!existsSync(resultsPath)) {
        const record = {
          suite: name,
          script: `bench/${name}${SUFFIX}`,
          finishedAt: new Date().toISOString(),
          exitCode,
          durationS,
          stdout,
        };
        writeFileSync(resultsPath, `${JSON.stringify(record, null, 2)}\n`);
      }
      resolve({ exitCode, durationS });
    });
  });
}
