import { DomainError } from '../errors.ts';
import type { Database, Queryable } from '../storage/database.ts';
import { isValidEmail, normalizeEmail } from './email-address.ts';
import { isImportableHash } from './passwords/password-hasher.ts';
import { insertUser } from './user-store.ts';

/**
 * Bulk import from another identity system. Password hashes are taken as they are (bcrypt or
 * argon2id): the plaintext is unknown, so nothing can be re-hashed now; a bcrypt hash is
 * verified at the user's next login and replaced by argon2id then.
 */
export interface ImportRecord {
  email: string;
  name?: string | null;
  password_hash: string;
  email_verified?: boolean;
  roles?: string[];
}

export interface ImportReport {
  imported: number;
  skipped: { line: number; email: string; reason: string }[];
}

function check(record: unknown): string | null {
  if (typeof record !== 'object' || record === null) return 'not a JSON object';
  const r = record as Record<string, unknown>;
  if (typeof r.email !== 'string' || !isValidEmail(normalizeEmail(r.email)))
    return 'email is missing or invalid';
  if (typeof r.password_hash !== 'string' || !isImportableHash(r.password_hash))
    return 'password_hash is not a bcrypt or argon2id hash';
  if (r.name !== undefined && r.name !== null && (typeof r.name !== 'string' || r.name.length > 200))
    return 'name must be a string';
  if (r.email_verified !== undefined && typeof r.email_verified !== 'boolean')
    return 'email_verified must be true or false';
  if (r.roles !== undefined && !(Array.isArray(r.roles) && r.roles.every((x) => typeof x === 'string')))
    return 'roles must be a list of names';
  return null;
}

/**
 * Imports JSON-lines text. Every line is checked first; any malformed line stops the import
 * before anything is written. Existing emails are skipped and reported. All in one transaction.
 */
export async function importUsers(
  db: Database,
  text: string,
  grantRoles: (tx: Queryable, userId: string, roles: string[]) => Promise<void>,
): Promise<ImportReport> {
  const lines = text
    .split(/\r?\n/)
    .map((line, index) => ({ line: index + 1, text: line.trim() }))
    .filter((l) => l.text !== '');
  const records: { line: number; record: ImportRecord }[] = [];
  const problems: string[] = [];
  for (const { line, text: raw } of lines) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      problems.push(`line ${line}: not valid JSON`);
      continue;
    }
    const problem = check(parsed);
    if (problem) problems.push(`line ${line}: ${problem}`);
    else records.push({ line, record: parsed as ImportRecord });
  }
  if (problems.length > 0)
    throw new DomainError('validation-error', `Nothing was imported:\n${problems.join('\n')}`);
  return db.transaction(async (tx) => {
    const report: ImportReport = { imported: 0, skipped: [] };
    for (const { line, record } of records) {
      const email = normalizeEmail(record.email);
      const user = await insertUser(tx, {
        email,
        name: record.name?.trim() || null,
        passwordHash: record.password_hash,
        emailVerified: record.email_verified ?? false,
      });
      if (!user) {
        report.skipped.push({ line, email, reason: 'an account with this email exists' });
        continue;
      }
      await grantRoles(tx, user.id, record.roles ?? []);
      report.imported += 1;
    }
    return report;
  });
}
