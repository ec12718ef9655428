import { createHash, randomBytes } from 'node:crypto';

/**
 * Generated high-entropy secrets (session tokens, refresh tokens, email links, API keys):
 * 256 random bits, shown to their owner once, stored only as SHA-256. A slow hash would add
 * nothing here (there is nothing to guess) and would only cost throughput.
 */
export function generateToken(prefix = ''): string {
  return prefix + randomBytes(32).toString('base64url');
}

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}
