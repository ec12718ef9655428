import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { StartupError } from '../errors.ts';
import type { Database, Queryable, QueryResult } from './database.ts';

const INT8_OID = 20;
const parsers = { [INT8_OID]: (value: string) => Number(value) };

/**
 * Embedded PostgreSQL runs in this process's memory, so it gets a laptop-sized buffer pool:
 * Postgres' 128 MB default shared_buffers alone would double the server's idle footprint
 * (measured: 343 MB RSS at 128 MB, 216 MB at 16 MB, for a reopened data directory).
 */
const startParams = [
  ...PGlite.defaultStartParams,
  '-c',
  'shared_buffers=16MB',
  '-c',
  'wal_buffers=1MB',
  '-c',
  'work_mem=2MB',
];

/**
 * PGlite serves one process per data directory. A lock file holding our pid keeps a second
 * process (say `gatehouse migrate` while the server runs) from opening the same files.
 */
function acquireDirectoryLock(pgdata: string): string {
  const lockPath = join(pgdata, '..', 'gatehouse.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return lockPath;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new StartupError(`Cannot create the lock file ${lockPath}: ${(error as Error).message}`);
      }
      const pid = Number(readFileSync(lockPath, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processIsAlive(pid)) {
        throw new StartupError(
          `The data directory ${join(pgdata, '..')} is in use by another Gatehouse process (pid ${pid}). ` +
            'Embedded PGlite serves one process per directory: stop that process first, ' +
            'or run Gatehouse on PostgreSQL (DATABASE_URL) to share the database between processes.',
        );
      }
      // A stale lock from a process that died: take it over.
      rmSync(lockPath, { force: true });
    }
  }
  throw new StartupError(`Cannot lock the data directory ${join(pgdata, '..')}`);
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class PgliteDatabase implements Database {
  readonly kind = 'pglite' as const;
  readonly description: string;
  private readonly db: PGlite;
  private readonly lockPath: string | undefined;

  private constructor(db: PGlite, description: string, lockPath: string | undefined) {
    this.db = db;
    this.description = description;
    this.lockPath = lockPath;
  }

  /** Opens (creating when needed) the database in `<dataDir>/pgdata`, or in memory when dataDir is null. */
  static async open(dataDir: string | null): Promise<PgliteDatabase> {
    if (dataDir === null) {
      const db = await PGlite.create({ parsers, startParams });
      return new PgliteDatabase(db, 'PGlite (in memory)', undefined);
    }
    const pgdata = join(dataDir, 'pgdata');
    try {
      mkdirSync(dataDir, { recursive: true, mode: 0o700 });
      if (existsSync(pgdata) && !statSync(pgdata).isDirectory()) {
        throw new StartupError(`The embedded database path ${pgdata} exists but is not a directory`);
      }
    } catch (error) {
      if (error instanceof StartupError) throw error;
      throw new StartupError(`Cannot use the data directory ${dataDir}: ${(error as Error).message}`);
    }
    const lockPath = acquireDirectoryLock(pgdata);
    try {
      const db = await PGlite.create(pgdata, { parsers, startParams });
      await db.query('SELECT 1');
      return new PgliteDatabase(db, `PGlite (embedded) in ${pgdata}`, lockPath);
    } catch (error) {
      rmSync(lockPath, { force: true });
      throw new StartupError(
        `The embedded database in ${pgdata} cannot be opened; it may be corrupt or from an incompatible version ` +
          `(${(error as Error).message ?? String(error)}). Restore it from a backup or move it away to start afresh.`,
        { cause: error },
      );
    }
  }

  async query<Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<Row>> {
    const result = await this.db.query<Row>(sql, params as unknown[]);
    return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length };
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.db.transaction((tx) =>
      fn({
        async query<Row>(sql: string, params?: readonly unknown[]) {
          const result = await tx.query<Row>(sql, params as unknown[]);
          return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length };
        },
        async exec(sql: string) {
          await tx.exec(sql);
        },
      }),
    );
  }

  async exec(sql: string): Promise<void> {
    await this.db.exec(sql);
  }

  async ping(): Promise<void> {
    await this.db.query('SELECT 1');
  }

  async close(): Promise<void> {
    try {
      await this.db.close();
    } finally {
      if (this.lockPath) rmSync(this.lockPath, { force: true });
    }
  }
}
