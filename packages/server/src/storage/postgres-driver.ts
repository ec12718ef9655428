import pg from 'pg';
import { DependencyUnavailableError } from '../errors.ts';
import type { Database, Queryable, QueryResult } from './database.ts';

// int8 counts and ids fit in a double here; parse them as numbers on both drivers.
const INT8_OID = 20;
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === INT8_OID
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EPIPE',
  'EHOSTUNREACH',
  'EAI_AGAIN',
]);

/** True for errors that mean "the database is not there", as opposed to a bad statement. */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: string }).code;
  if (code && CONNECTION_ERROR_CODES.has(code)) return true;
  // SQLSTATE class 08 (connection exception) and 57P01-57P03 (shutdown, cannot connect now).
  if (code && (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03'))
    return true;
  return /Connection terminated|connection timeout|Client has encountered a connection error/i.test(
    error.message,
  );
}

function wrap(error: unknown): never {
  if (isConnectionError(error)) throw new DependencyUnavailableError('database', { cause: error });
  throw error;
}

/**
 * Parameterised statements run as named prepared statements: PostgreSQL parses and plans each
 * once per connection instead of on every call, which measured as most of the database's CPU
 * on the hot paths (a refresh rotation is a CTE over two tables). Our SQL is static text, so
 * the set stays small; past the cap (dynamically built SQL), statements run unnamed.
 * Parameterless text goes through the simple protocol, which also runs multi-statement scripts.
 */
const MAX_PREPARED = 512;

class PreparedNames {
  private readonly names = new Map<string, string>();

  config(sql: string, params: readonly unknown[] | undefined): string | pg.QueryConfig {
    if (params === undefined || params.length === 0) return sql;
    let name = this.names.get(sql);
    if (name === undefined) {
      if (this.names.size >= MAX_PREPARED) return { text: sql, values: params as unknown[] };
      name = `gh${this.names.size + 1}`;
      this.names.set(sql, name);
    }
    return { name, text: sql, values: params as unknown[] };
  }
}

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export interface PostgresOptions {
  /** Schema for Gatehouse's tables (default public); created when missing. */
  schema?: string;
  maxConnections?: number;
}

export class PostgresDatabase implements Database {
  readonly kind = 'postgres' as const;
  readonly description: string;
  private readonly pool: pg.Pool;

  constructor(url: string, options: PostgresOptions = {}) {
    const parsed = new URL(url);
    this.description = `PostgreSQL ${parsed.hostname}:${parsed.port || 5432}${parsed.pathname}${options.schema ? ` (schema ${options.schema})` : ''}`;
    this.pool = new pg.Pool({
      connectionString: url,
      max: options.maxConnections ?? 10,
      connectionTimeoutMillis: 3000,
      idleTimeoutMillis: 30_000,
      types,
      ...(options.schema ? { options: `-c search_path=${quoteIdent(options.schema)}` } : {}),
    });
    // An idle client losing its connection must not crash the process; the next query reconnects.
    this.pool.on('error', () => {});
    this.schema = options.schema;
  }

  private readonly schema: string | undefined;

  /** Creates the configured schema when missing; called once before migrations. */
  async prepare(): Promise<void> {
    if (this.schema) await this.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(this.schema)}`);
  }

  private readonly prepared = new PreparedNames();

  async query<Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<Row>> {
    try {
      const result = await this.pool.query(this.prepared.config(sql, params) as pg.QueryConfig);
      return { rows: result.rows as Row[], rowCount: result.rowCount ?? 0 };
    } catch (error) {
      wrap(error);
    }
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      wrap(error);
    }
    const prepared = this.prepared;
    const tx: Queryable = {
      async query<Row>(sql: string, params?: readonly unknown[]) {
        try {
          const result = await client.query(prepared.config(sql, params) as pg.QueryConfig);
          return { rows: result.rows as Row[], rowCount: result.rowCount ?? 0 };
        } catch (error) {
          wrap(error);
        }
      },
      async exec(sql: string) {
        await tx.query(sql);
      },
    };
    let broken = false;
    try {
      await tx.query('BEGIN');
      const value = await fn(tx);
      await tx.query('COMMIT');
      return value;
    } catch (error) {
      try {
        await client.query('ROLLBACK');
      } catch {
        broken = true;
      }
      throw error;
    } finally {
      client.release(broken);
    }
  }

  async exec(sql: string): Promise<void> {
    await this.query(sql);
  }

  async ping(): Promise<void> {
    await this.query('SELECT 1');
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
