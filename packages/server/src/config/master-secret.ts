import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StartupError } from '../errors.ts';

export interface MasterSecret {
  secret: string;
  /** Where it came from, for the start-up banner. */
  source: 'environment' | 'data directory' | 'generated';
  path?: string;
}

/**
 * In embedded mode the master secret may live in the data directory: generated once with
 * 0600 permissions so a laptop install needs no set-up. With DATABASE_URL the config
 * loader has already required GATEHOUSE_SECRET, because several nodes must share it.
 */
export function resolveMasterSecret(configured: string | undefined, dataDir: string): MasterSecret {
  if (configured) return { secret: configured, source: 'environment' };
  const path = join(dataDir, 'secret');
  try {
    const stat = statSync(path);
    if ((stat.mode & 0o077) !== 0) chmodSync(path, 0o600);
    const secret = readFileSync(path, 'utf8').trim();
    if (secret.length < 32)
      throw new StartupError(`The master secret file ${path} is shorter than 32 characters`);
    return { secret, source: 'data directory', path };
  } catch (error) {
    if (error instanceof StartupError) throw error;
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new StartupError(`Cannot read the master secret file ${path}: ${(error as Error).message}`);
    }
  }
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const secret = randomBytes(48).toString('base64url');
    writeFileSync(path, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    return { secret, source: 'generated', path };
  } catch (error) {
    throw new StartupError(`Cannot create the master secret file ${path}: ${(error as Error).message}`);
  }
}
