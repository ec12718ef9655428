/**
 * The typed query layer every domain uses. One interface, two drivers (PGlite embedded,
 * PostgreSQL over `pg`), the same SQL on both. Inside `transaction`, use only the `tx`
 * handed to the callback: PGlite has one connection, so calling the outer database there
 * would wait for the transaction that waits for it.
 */
export interface QueryResult<Row> {
  rows: Row[];
  rowCount: number;
}

export interface Queryable {
  query<Row = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<Row>>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
}

export interface Database extends Queryable {
  readonly kind: 'pglite' | 'postgres';
  /** Human description for the start-up banner (never includes credentials). */
  readonly description: string;
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Throws DependencyUnavailableError when the database cannot be reached. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Returns the first row or undefined, for lookups by key. */
export async function queryOne<Row>(
  db: Queryable,
  sql: string,
  params?: readonly unknown[],
): Promise<Row | undefined> {
  const result = await db.query<Row>(sql, params);
  return result.rows[0];
}
