import { hash, randomBytes } from 'node:crypto';

/**
 * Generated high-entropy secrets (session tokens, refresh tokens, email links, API keys):
 * 256 random bits, shown to their owner once, stored only as SHA-256. A slow hash would add
 * nothing here (there is nothing to guess) and would only cost throughput.
 */
export function generateToken(prefix = ''): string {
  return prefix + randomBytes(32).toString('base64url');
}

// One-shot crypto.hash: a third of createHash().update().digest()'s cost, on every cookie check.
export function hashToken(token: string): Buffer {
  return hash('sha256', token, 'buffer');
}

/** The same digest as base64, for in-memory cache keys. */
export function hashTokenBase64(token: string): string {
  return hash('sha256', token, 'base64');
}
