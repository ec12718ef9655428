import { readFileSync } from 'node:fs';
import { openContext } from '../app.ts';
import { insertUserRoles, selectRoleIds } from '../authz/authz-store.ts';
import { loadConfig } from '../config/config.ts';
import { DomainError, StartupError } from '../errors.ts';
import { importUsers } from '../identity/user-import.ts';
import { DEFAULT_ROLES } from '../services.ts';
import type { Command } from './commands.ts';

/** Imports accounts from another system (JSON lines with bcrypt or argon2id hashes). */
export const usersCommand: Command = {
  name: 'users',
  summary: 'Import accounts with their password hashes: users import FILE.jsonl',
  usage: [
    'gatehouse users import FILE',
    '  FILE holds one JSON object per line:',
    '  {"email": "...", "password_hash": "$2b$12$..." | "$argon2id$...", "name": "...", "email_verified": true, "roles": ["user"]}',
    '  bcrypt hashes are verified at the next login and then replaced by argon2id. Nothing is written if any line is',
    '  malformed; existing emails are skipped and listed. Roles default to "user".',
  ].join('\n'),
  async run(args) {
    const [verb, file] = args;
    if (verb !== 'import' || !file) {
      process.stderr.write(`Usage: ${this.usage}\n`);
      return 2;
    }
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new StartupError(`Cannot read ${file}: ${(error as Error).message}`);
    }
    const context = await openContext(loadConfig());
    try {
      const report = await importUsers(context.db, text, async (tx, userId, roles) => {
        const wanted = roles.length > 0 ? roles : DEFAULT_ROLES;
        const ids = await selectRoleIds(tx, wanted);
        const unknown = wanted.filter((name) => !ids.has(name));
        if (unknown.length > 0)
          throw new DomainError(
            'validation-error',
            `Nothing was imported: unknown roles ${unknown.join(', ')}`,
          );
        await insertUserRoles(tx, userId, [...ids.values()], null);
      });
      process.stdout.write(`Imported ${report.imported} account(s).\n`);
      for (const skip of report.skipped)
        process.stdout.write(`  skipped line ${skip.line} (${skip.email}): ${skip.reason}\n`);
      return 0;
    } catch (error) {
      if (error instanceof DomainError) {
        process.stderr.write(`gatehouse users: ${error.detail}\n`);
        return 1;
      }
      throw error;
    } finally {
      await Promise.allSettled([context.state.close(), context.db.close()]);
    }
  },
};
