import { parseArgs } from 'node:util';
import { loadConfig } from '../config/config.ts';
import { resolveMasterSecret } from '../config/master-secret.ts';
import { StartupError } from '../errors.ts';
import { openConfiguredDatabase } from '../storage/index.ts';
import { migrate } from '../storage/migrate.ts';
import { SIGNING_ALGS, type SigningAlg } from '../tokens/jwt.ts';
import { createSigningKeys, defaultUse, type KeyUse, type SigningKeyRow } from '../tokens/signing-keys.ts';
import type { Command } from './commands.ts';

const USES: readonly KeyUse[] = ['access_token', 'id_token'];
const USAGE =
  'gatehouse keys rotate [--alg ES256|RS256|EdDSA] [--use access_token|id_token] | gatehouse keys list';

function when(date: Date | null): string {
  return date ? date.toISOString().replace(/\.\d{3}Z$/, 'Z') : '-';
}

function table(rows: SigningKeyRow[]): string {
  const header = ['KID', 'ALG', 'USE', 'STATE', 'CREATED', 'ACTIVATED', 'RETIRING', 'RETIRED', 'NOT AFTER'];
  const lines = rows.map((row) => [
    row.kid,
    row.alg,
    row.use,
    row.state,
    when(row.createdAt),
    when(row.activatedAt),
    when(row.retiringAt),
    when(row.retiredAt),
    when(row.notAfter),
  ]);
  const widths = header.map((title, i) =>
    Math.max(title.length, ...lines.map((line) => (line[i] as string).length)),
  );
  return [header, ...lines]
    .map((line) =>
      line
        .map((cell, i) => cell.padEnd(widths[i] as number))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export const keysCommand: Command = {
  name: 'keys',
  summary: 'Rotate or list the token signing keys',
  usage: USAGE,
  async run(args) {
    const [action, ...rest] = args;
    if (action !== 'rotate' && action !== 'list') {
      process.stderr.write(`Usage: ${USAGE}\n`);
      return 2;
    }
    let values: { alg?: string | undefined; use?: string | undefined };
    try {
      ({ values } = parseArgs({
        args: rest,
        options: action === 'rotate' ? { alg: { type: 'string' }, use: { type: 'string' } } : {},
        strict: true,
        allowPositionals: false,
      }));
    } catch (error) {
      process.stderr.write(`${(error as Error).message}\nUsage: ${USAGE}\n`);
      return 2;
    }
    const alg = (values.alg ?? 'ES256') as SigningAlg;
    if (!SIGNING_ALGS.includes(alg))
      throw new StartupError(`--alg must be one of ${SIGNING_ALGS.join(', ')}`);
    const use = (values.use ?? defaultUse(alg)) as KeyUse;
    if (!USES.includes(use)) throw new StartupError(`--use must be one of ${USES.join(', ')}`);

    const config = loadConfig();
    const masterSecret = resolveMasterSecret(config.secret, config.dataDir);
    const db = await openConfiguredDatabase(config);
    try {
      await migrate(db);
      const keys = createSigningKeys({ config, db, masterSecret });
      if (action === 'list') {
        const rows = await keys.list();
        process.stdout.write(
          rows.length === 0
            ? 'No signing keys yet (the server creates them at start).\n'
            : `${table(rows)}\n`,
        );
        return 0;
      }
      const result = await keys.rotate(alg, use);
      process.stdout.write(
        `${result.created ? 'Created' : 'A rotation is already pending:'} ${result.alg} ${result.use} key ${result.kid} (state next, published in the JWKS now).\n` +
          `It becomes current at the server's first key check after ${when(result.activatesAt)} ` +
          `(JWKS cache lifetime ${keys.jwksCacheSeconds} s); the key it replaces stays published until its tokens expire.\n`,
      );
      return 0;
    } finally {
      await db.close();
    }
  },
};
