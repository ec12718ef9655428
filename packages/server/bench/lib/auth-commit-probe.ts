// A probe for slow PostgreSQL commits: one small INSERT (autocommit, so one WAL flush) every
// 20 ms into a table of the benchmark's schema, remembering the slow ones. Used to tell whether
// bursts of slow logins line up with commits that took long (fsync of the WAL on a slow disk).
import pg from 'pg';

export interface SlowCommit {
  /** When the commit was sent (ms since the epoch). */
  at: number;
  ms: number;
}

export interface CommitProbe {
  /** Stops probing; returns the commits slower than thresholdMs and how many were made. */
  stop: () => Promise<{ commits: number; slow: SlowCommit[] }>;
}

export async function startCommitProbe(
  databaseUrl: string,
  schema: string,
  thresholdMs = 25,
): Promise<CommitProbe> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const table = `"${schema}".bench_commit_probe`;
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${table} (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())`,
  );
  let running = true;
  let commits = 0;
  const slow: SlowCommit[] = [];
  const loop = (async () => {
    while (running) {
      const at = Date.now();
      const started = performance.now();
      await client.query(`INSERT INTO ${table} DEFAULT VALUES`);
      const ms = performance.now() - started;
      commits++;
      if (ms > thresholdMs) slow.push({ at, ms: Math.round(ms) });
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop.catch(() => {});
      await client.end().catch(() => {});
      return { commits, slow };
    },
  };
}
