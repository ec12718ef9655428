import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { openContext } from '../app.ts';
import { loadConfig } from '../config/config.ts';
import { DomainError } from '../errors.ts';
import { createServices } from '../services.ts';
import type { Command } from './commands.ts';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/** Creates the first (or another) administrator. */
export const adminCommand: Command = {
  name: 'admin',
  summary: 'Create an administrator: admin create --email E [--password-stdin]',
  usage: [
    'gatehouse admin create --email EMAIL [--name NAME] [--password-stdin]',
    '  --password-stdin  read the password from standard input; without it a strong one is generated and printed once.',
    'In embedded mode (no DATABASE_URL) stop the server first: PGlite serves one process per data directory.',
  ].join('\n'),
  async run(args) {
    const { positionals, values } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        email: { type: 'string' },
        name: { type: 'string' },
        'password-stdin': { type: 'boolean', default: false },
      },
    });
    if (positionals[0] !== 'create' || !values.email) {
      process.stderr.write(`Usage: ${this.usage}\n`);
      return 2;
    }
    const generated = !values['password-stdin'];
    const password = generated ? randomBytes(18).toString('base64url') : await readStdin();
    const context = await openContext(loadConfig());
    const services = createServices(context);
    try {
      const user = await services.identity.createUser({
        email: values.email,
        password,
        name: values.name ?? null,
      });
      await services.authz.assignRole(user.id, 'admin', null);
      process.stdout.write(`Created administrator ${user.email} (id ${user.id}).\n`);
      if (generated) process.stdout.write(`Password (shown once, store it now): ${password}\n`);
      return 0;
    } catch (error) {
      if (error instanceof DomainError) {
        process.stderr.write(`gatehouse admin: ${error.detail ?? error.kind}\n`);
        for (const field of (error.extensions.errors as { pointer: string; detail: string }[] | undefined) ??
          []) {
          process.stderr.write(`  ${field.pointer}: ${field.detail}\n`);
        }
        return 1;
      }
      throw error;
    } finally {
      await services.stop();
      await Promise.allSettled([context.state.close(), context.db.close()]);
    }
  },
};
