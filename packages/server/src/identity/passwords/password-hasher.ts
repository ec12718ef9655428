import { randomBytes } from 'node:crypto';
import { hash as argon2Hash, verify as argon2Verify, parseOptions } from '@node-rs/argon2';
import { normalizePassword } from './password-policy.ts';

type BcryptVerify = typeof import('@node-rs/bcrypt').verify;
let bcryptVerify: Promise<BcryptVerify> | undefined;

/** bcrypt (a native addon) loads with the first imported bcrypt hash to verify: most servers never see one. */
function loadBcryptVerify(): Promise<BcryptVerify> {
  bcryptVerify ??= import('@node-rs/bcrypt').then(
    (bcrypt) => bcrypt.verify,
    (error: unknown) => {
      bcryptVerify = undefined; // let a later call try again
      throw error;
    },
  );
  return bcryptVerify;
}

/**
 * Password hashing with argon2id (RFC 9106) through @node-rs/argon2: hash and verify run on
 * the libuv thread pool, so a login never stalls the event loop. Imported bcrypt hashes
 * ($2a$/$2b$/$2y$) still verify and are reported for rehashing. Both libraries compare the
 * digests in constant time; hash strings are never compared here.
 *
 * Passwords are NFKC-normalised before hashing (idempotent, so callers may normalise too).
 */
export interface PasswordHashParams {
  /** Memory per hash in KiB (argon2 `m`). */
  memoryKiB: number;
  /** Passes over the memory (argon2 `t`). */
  iterations: number;
  /** Lanes (argon2 `p`). */
  parallelism: number;
}

/** OWASP Password Storage Cheat Sheet: m=19 MiB, t=2, p=1. */
export const DEFAULT_PASSWORD_HASH_PARAMS: Readonly<PasswordHashParams> = Object.freeze({
  memoryKiB: 19_456,
  iterations: 2,
  parallelism: 1,
});

export interface PasswordVerification {
  ok: boolean;
  /** True only when ok: the stored hash is bcrypt or uses other argon2 parameters; store hash(password). */
  needsRehash: boolean;
}

const ARGON2_OUTPUT_BYTES = 32;
// parseOptions() reports the algorithm and version as numeric enum members.
const ARGON2ID = 2;
const ARGON2_VERSION_0X13 = 1;
const BCRYPT_PREFIX = /^\$2[aby]\$/;
const BCRYPT_HASH = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;
const ARGON2ID_PHC = /^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/;

/** Hashes another system may hand us at import: bcrypt ($2a$/$2b$/$2y$) or argon2id PHC strings. */
export function isImportableHash(hash: string): boolean {
  return BCRYPT_HASH.test(hash) || ARGON2ID_PHC.test(hash);
}
const FAILED: PasswordVerification = Object.freeze({ ok: false, needsRehash: false });

function checkParams(params: PasswordHashParams): void {
  const { memoryKiB, iterations, parallelism } = params;
  if (!Number.isInteger(parallelism) || parallelism < 1 || parallelism > 255) {
    throw new RangeError('parallelism must be an integer from 1 to 255');
  }
  if (!Number.isInteger(memoryKiB) || memoryKiB < 8 * parallelism || memoryKiB > 4 * 1024 * 1024) {
    throw new RangeError('memoryKiB must be an integer from 8 x parallelism to 4194304 (4 GiB)');
  }
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > 100) {
    throw new RangeError('iterations must be an integer from 1 to 100');
  }
}

export class PasswordHasher {
  readonly params: Readonly<PasswordHashParams>;
  private readonly options: { memoryCost: number; timeCost: number; parallelism: number; outputLen: number };
  private dummyHash: Promise<string> | undefined;

  constructor(params: Partial<PasswordHashParams> = {}) {
    const merged = { ...DEFAULT_PASSWORD_HASH_PARAMS, ...params };
    checkParams(merged);
    this.params = Object.freeze(merged);
    // The library's default algorithm is argon2id, version 0x13; the tests pin that.
    this.options = {
      memoryCost: merged.memoryKiB,
      timeCost: merged.iterations,
      parallelism: merged.parallelism,
      outputLen: ARGON2_OUTPUT_BYTES,
    };
  }

  /** A PHC string: $argon2id$v=19$m=…,t=…,p=…$salt$hash (16-byte random salt). */
  hash(password: string): Promise<string> {
    return argon2Hash(normalizePassword(password), this.options);
  }

  /** Never throws for a bad stored hash: a malformed or unknown format is simply ok: false. */
  async verify(hash: string, password: string): Promise<PasswordVerification> {
    if (typeof hash !== 'string' || typeof password !== 'string') return FAILED;
    if (hash.startsWith('$argon2')) return this.verifyArgon2(hash, password);
    if (BCRYPT_PREFIX.test(hash)) return this.verifyBcrypt(hash, password);
    return FAILED;
  }

  /**
   * The same work as verifying a real argon2 hash with the current parameters, always false:
   * run it for an unknown email so that response times do not tell which accounts exist.
   */
  async verifyDummy(password: string): Promise<false> {
    this.dummyHash ??= argon2Hash(randomBytes(32).toString('base64url'), this.options);
    let hash: string;
    try {
      hash = await this.dummyHash;
    } catch (error) {
      this.dummyHash = undefined;
      throw error;
    }
    await argon2Verify(hash, normalizePassword(typeof password === 'string' ? password : ''));
    return false;
  }

  private async verifyArgon2(hash: string, password: string): Promise<PasswordVerification> {
    let parsed: ReturnType<typeof parseOptions>;
    try {
      parsed = parseOptions(hash);
    } catch {
      return FAILED;
    }
    let ok: boolean;
    try {
      ok = await argon2Verify(hash, normalizePassword(password));
    } catch {
      return FAILED;
    }
    if (!ok) return FAILED;
    const needsRehash =
      (parsed.algorithm as number) !== ARGON2ID ||
      (parsed.version as number) !== ARGON2_VERSION_0X13 ||
      parsed.memoryCost !== this.params.memoryKiB ||
      parsed.timeCost !== this.params.iterations ||
      parsed.parallelism !== this.params.parallelism ||
      parsed.outputLen !== ARGON2_OUTPUT_BYTES;
    return { ok: true, needsRehash };
  }

  /**
   * Imported hashes come from systems that may not have normalised: try the password as typed,
   * then its NFKC form. bcrypt reads at most 72 bytes of the password (the library's default);
   * the rehash after a successful login stores an argon2id hash of the whole password.
   */
  private async verifyBcrypt(hash: string, password: string): Promise<PasswordVerification> {
    const candidates = [password];
    const normalized = normalizePassword(password);
    if (normalized !== password) candidates.push(normalized);
    const verify = await loadBcryptVerify();
    for (const candidate of candidates) {
      try {
        if (await verify(candidate, hash)) return { ok: true, needsRehash: true };
      } catch {
        return FAILED;
      }
    }
    return FAILED;
  }
}
