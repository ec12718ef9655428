import type { Database } from './database.ts';

export type { Database, Queryable, QueryResult } from './database.ts';
export { queryOne } from './database.ts';

export interface DatabaseOptions {
  databaseUrl: string | undefined;
  /** Embedded data directory; null keeps PGlite in memory (tests). */
  dataDir: string | null;
  schema?: string;
}

/**
 * PostgreSQL when a URL is configured, otherwise embedded PGlite. Each driver is loaded only
 * when used: a node on PostgreSQL never pays for the embedded engine's code, nor the reverse.
 */
export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  if (options.databaseUrl) {
    const { PostgresDatabase } = await import('./postgres-driver.ts');
    const db = new PostgresDatabase(options.databaseUrl, options.schema ? { schema: options.schema } : {});
    await db.prepare().catch(async (error) => {
      await db.close();
      throw error;
    });
    return db;
  }
  const { PgliteDatabase } = await import('./pglite-driver.ts');
  return PgliteDatabase.open(options.dataDir);
}

/** The database the configuration names (the CLI and the server open it the same way). */
export function openConfiguredDatabase(
  config: { databaseUrl: string | undefined; dataDir: string; databaseSchema: string | undefined },
  options: { inMemory?: boolean } = {},
): Promise<Database> {
  return openDatabase({
    databaseUrl: config.databaseUrl,
    dataDir: options.inMemory ? null : config.dataDir,
    ...(config.databaseSchema ? { schema: config.databaseSchema } : {}),
  });
}
