import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import { promisify } from 'node:util';
import type { AppContext } from '../app.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import { StartupError } from '../errors.ts';
import type { Logger } from '../logging/logger.ts';
import type { Database } from '../storage/database.ts';
import {
  createJwtSigner,
  type JwtSigner,
  keyMatchesAlg,
  type SigningAlg,
  type VerificationKey,
} from './jwt.ts';
import { deriveKey, open, SecretBoxError, seal } from './secret-box.ts';
import {
  demoteCurrentKey,
  findNextKey,
  hasCurrentKey,
  insertKey,
  type KeyUse,
  listAllKeys,
  listKeysDueForRotation,
  listPromotableKeys,
  listPublishedKeys,
  type PublicJwk,
  promoteKey,
  retireExpiredKeys,
  type SigningKeyRow,
} from './signing-key-store.ts';

export type { KeyState, KeyUse, PublicJwk, SigningKeyRow } from './signing-key-store.ts';

const generateKeyPairAsync = promisify(generateKeyPair);

const HKDF_INFO = 'gatehouse signing keys v1';
/** Unknown kids reload the key set at most this often, so junk tokens cannot hammer the database. */
const RELOAD_INTERVAL_MS = 1000;
/** jwks() serves a snapshot at most this old. */
const JWKS_SNAPSHOT_MS = 1000;
/** Margin on top of the JWKS cache lifetime before a next key may sign (covers the snapshot age and clock drift). */
const PUBLISH_MARGIN_SECONDS = 5;
const DAY_MS = 86_400_000;

export interface KeySet {
  alg: SigningAlg;
  use: KeyUse;
}

export interface SigningKeyOptions {
  /** How long verifiers may cache the JWKS (Cache-Control max-age); a next key waits this long before signing. */
  jwksCacheSeconds?: number;
  /** Longest lifetime of any token these keys sign; a retired key stays published this long after its last use. */
  maxTokenTtlSeconds?: number;
  /** A current key older than this gets a successor automatically. */
  rotationIntervalDays?: number;
  /** Key sets that must exist from start-up (default ES256 access tokens and RS256 ID tokens). Others are made on demand. */
  keySets?: KeySet[];
  /** How often the maintenance timer runs advance() and refreshes this node's key snapshot (default 60 s). */
  syncIntervalSeconds?: number;
  /** Verifiers' allowed clock skew, added to how long a retiring key stays published (default 30 s). */
  clockToleranceSeconds?: number;
  /** Milliseconds since the epoch (tests inject a clock). */
  now?: () => number;
  logger?: Pick<Logger, 'info' | 'warn'>;
  audit?: AuditLog;
}

export interface RotationResult {
  kid: string;
  alg: SigningAlg;
  use: KeyUse;
  /** False when a pending key already existed and is returned instead. */
  created: boolean;
  createdAt: Date;
  /** Earliest time the key may become current (the next advance() after it promotes it). */
  activatesAt: Date;
}

export interface AdvanceResult {
  promoted: string[];
  retired: string[];
  created: string[];
}

interface LoadedKey {
  row: SigningKeyRow;
  sealed: Uint8Array;
  verification: VerificationKey;
  signer?: JwtSigner;
}

/** RS256 keys sign ID tokens unless asked otherwise; ES256 and EdDSA keys sign access tokens. */
export function defaultUse(alg: SigningAlg): KeyUse {
  return alg === 'RS256' ? 'id_token' : 'access_token';
}

function setName(alg: SigningAlg, use: KeyUse): string {
  return `${alg}/${use}`;
}

/** RFC 7638 thumbprint: SHA-256 over the required public members in lexicographic order. */
export function jwkThumbprint(jwk: JsonWebKey): string {
  const members =
    jwk.kty === 'EC'
      ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }
      : jwk.kty === 'RSA'
        ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
        : { crv: jwk.crv, kty: jwk.kty, x: jwk.x };
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

async function generate(alg: SigningAlg): Promise<{ publicKey: KeyObject; privateKey: KeyObject }> {
  if (alg === 'ES256') return generateKeyPairAsync('ec', { namedCurve: 'P-256' });
  if (alg === 'RS256') return generateKeyPairAsync('rsa', { modulusLength: 2048 });
  return generateKeyPairAsync('ed25519');
}

function isUniqueViolation(error: unknown): boolean {
  return (error as { code?: string } | null)?.code === '23505';
}

class LostRace extends Error {}

/**
 * Signing keys per (alg, use), with a rotation that never breaks a verifier holding a cached
 * JWKS: a new key is published as `next` at least one JWKS cache lifetime before it signs
 * anything; the key it replaces stays published (`retiring`) until every token it signed has
 * expired, then is `retired`. Every state change is one conditional UPDATE, and partial
 * unique indexes allow one current and one next key per set, so several nodes may run
 * advance() at once. Private keys are stored sealed under the master secret and decrypted
 * once per kid per process: signing and verifying never touch the database.
 */
export class SigningKeyService {
  readonly jwksCacheSeconds: number;
  readonly maxTokenTtlSeconds: number;
  readonly rotationIntervalDays: number;
  readonly syncIntervalSeconds: number;
  readonly clockToleranceSeconds: number;
  readonly now: () => number;
  private readonly db: Database;
  private readonly boxKey: Buffer;
  private readonly keySets: KeySet[];
  private readonly logger: Pick<Logger, 'info' | 'warn'> | undefined;
  private readonly audit: AuditLog | undefined;
  private keys = new Map<string, LoadedKey>();
  private currentKids = new Map<string, string>();
  private loadedAt = Number.NEGATIVE_INFINITY;
  private lastUnknownKidReload = Number.NEGATIVE_INFINITY;
  private loading: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reloadCount = 0;

  constructor(db: Database, masterSecret: string, options: SigningKeyOptions = {}) {
    this.db = db;
    this.boxKey = deriveKey(masterSecret, HKDF_INFO);
    this.jwksCacheSeconds = options.jwksCacheSeconds ?? 300;
    this.maxTokenTtlSeconds = options.maxTokenTtlSeconds ?? 900;
    this.rotationIntervalDays = options.rotationIntervalDays ?? 30;
    this.syncIntervalSeconds = options.syncIntervalSeconds ?? 60;
    this.clockToleranceSeconds = options.clockToleranceSeconds ?? 30;
    this.keySets = options.keySets ?? [
      { alg: 'ES256', use: 'access_token' },
      { alg: 'RS256', use: 'id_token' },
    ];
    this.now = options.now ?? Date.now;
    this.logger = options.logger;
    this.audit = options.audit;
  }

  /** How many times the key set was read from the database (tests check junk kids cause no storm). */
  get reloads(): number {
    return this.reloadCount;
  }

  /** Start-up: ensureKeys, advance, then the maintenance timer (unref'd: it never holds the process open). */
  async start(): Promise<void> {
    await this.ensureKeys();
    await this.advance();
    this.timer ??= setInterval(() => {
      this.advance().catch((error) => this.logger?.warn({ err: error }, 'signing key maintenance failed'));
    }, this.syncIntervalSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Creates a current key for every configured set that has none. Straight to current: on a
   * first boot no verifier has cached anything yet. Then decrypts the current keys, so a wrong
   * master secret stops start-up instead of the first login.
   */
  async ensureKeys(): Promise<void> {
    for (const set of this.keySets) await this.ensureSet(set.alg, set.use);
    await this.reload();
    for (const set of this.keySets) {
      try {
        await this.signerFor(set.alg, set.use);
      } catch (error) {
        if (!(error instanceof SecretBoxError)) throw error;
        const kid = this.currentKids.get(setName(set.alg, set.use));
        throw new StartupError(
          `The signing key ${kid} cannot be decrypted with this master secret: GATEHOUSE_SECRET (or the data ` +
            'directory secret file) must be the one the keys were created with.',
          { cause: error },
        );
      }
    }
  }

  private async ensureSet(alg: SigningAlg, use: KeyUse): Promise<void> {
    if (await hasCurrentKey(this.db, alg, use)) return;
    const key = await this.createKey(alg, use);
    // Another node may have won the slot meanwhile: then ours is simply dropped.
    if (await insertKey(this.db, key, 'current', this.now()))
      this.recordCreated(key.kid, alg, use, 'current');
  }

  private async createKey(alg: SigningAlg, use: KeyUse) {
    const { publicKey, privateKey } = await generate(alg);
    const exported = publicKey.export({ format: 'jwk' });
    const kid = jwkThumbprint(exported);
    const publicJwk: PublicJwk = {
      kty: exported.kty as string,
      ...(exported.crv ? { crv: exported.crv } : {}),
      ...(exported.x ? { x: exported.x } : {}),
      ...(exported.y ? { y: exported.y } : {}),
      ...(exported.n ? { n: exported.n } : {}),
      ...(exported.e ? { e: exported.e } : {}),
      kid,
      alg,
      use: 'sig',
    };
    const der = privateKey.export({ format: 'der', type: 'pkcs8' });
    const privateKeyEnc = seal(this.boxKey, der, kid);
    der.fill(0);
    return { kid, alg, use, publicJwk, privateKeyEnc };
  }

  private recordCreated(kid: string, alg: SigningAlg, use: KeyUse, state: 'current' | 'next'): void {
    this.logger?.info({ kid, alg, use, state }, 'signing key created');
    this.audit?.record({
      type: 'signing_key.created',
      outcome: 'success',
      details: { kid, alg, use, state },
    });
  }

  /** When a next key created at `createdAt` may start signing. */
  activationTime(createdAt: Date): Date {
    return new Date(createdAt.getTime() + (this.jwksCacheSeconds + PUBLISH_MARGIN_SECONDS) * 1000);
  }

  /**
   * Starts a rotation: creates a `next` key, published from now on, which advance() promotes
   * once every cached JWKS can hold it. A pending key that already exists is returned instead.
   */
  async rotate(alg: SigningAlg = 'ES256', use: KeyUse = defaultUse(alg)): Promise<RotationResult> {
    let created = false;
    let next = await findNextKey(this.db, alg, use);
    if (!next) {
      const key = await this.createKey(alg, use);
      created = await insertKey(this.db, key, 'next', this.now());
      if (created) this.recordCreated(key.kid, alg, use, 'next');
      next = await findNextKey(this.db, alg, use);
    }
    if (!next) throw new Error(`No pending ${alg} ${use} key after rotation`);
    await this.reload();
    return {
      kid: next.kid,
      alg,
      use,
      created,
      createdAt: next.createdAt,
      activatesAt: this.activationTime(next.createdAt),
    };
  }

  /**
   * Moves every key whose time has come: retiring → retired once its last token expired,
   * next → current once published for a JWKS cache lifetime (the old current → retiring),
   * and a new next key for a current key older than the rotation interval. Idempotent, and
   * safe on several nodes at once.
   */
  async advance(): Promise<AdvanceResult> {
    const now = this.now();
    const result: AdvanceResult = { promoted: [], retired: [], created: [] };

    for (const row of await retireExpiredKeys(this.db, now)) {
      result.retired.push(row.kid);
      this.logger?.info({ kid: row.kid, alg: row.alg, use: row.use }, 'signing key retired');
      this.audit?.record({
        type: 'signing_key.retired',
        outcome: 'success',
        details: { kid: row.kid, alg: row.alg, use: row.use },
      });
    }

    const promotable = await listPromotableKeys(
      this.db,
      now - (this.jwksCacheSeconds + PUBLISH_MARGIN_SECONDS) * 1000,
    );
    for (const next of promotable) {
      // Nodes that have not refreshed yet may sign with the old key for one more sync interval.
      const notAfter =
        now + (this.maxTokenTtlSeconds + this.syncIntervalSeconds + this.clockToleranceSeconds) * 1000;
      try {
        const demoted = await this.db.transaction(async (tx) => {
          const old = await demoteCurrentKey(tx, next.alg, next.use, now, notAfter);
          if (!(await promoteKey(tx, next.kid, now))) throw new LostRace();
          return old;
        });
        result.promoted.push(next.kid);
        this.logger?.info(
          { kid: next.kid, previous: demoted, alg: next.alg, use: next.use },
          'signing key activated',
        );
        this.audit?.record({
          type: 'signing_key.activated',
          outcome: 'success',
          details: { kid: next.kid, previous: demoted ?? null, alg: next.alg, use: next.use },
        });
      } catch (error) {
        // Another node promoted it first: the transaction rolled back, nothing to do.
        if (!(error instanceof LostRace) && !isUniqueViolation(error)) throw error;
      }
    }

    const due = await listKeysDueForRotation(this.db, now - this.rotationIntervalDays * DAY_MS);
    for (const current of due) {
      const key = await this.createKey(current.alg, current.use);
      if (await insertKey(this.db, key, 'next', now)) {
        result.created.push(key.kid);
        this.recordCreated(key.kid, current.alg, current.use, 'next');
      }
    }

    await this.reload();
    return result;
  }

  /** Reads the published keys into this node's snapshot; concurrent callers share one query. */
  reload(): Promise<void> {
    this.loading ??= (async () => {
      try {
        this.reloadCount++;
        const rows = await listPublishedKeys(this.db);
        const keys = new Map<string, LoadedKey>();
        const currentKids = new Map<string, string>();
        for (const row of rows) {
          const { privateKeyEnc, ...publicRow } = row;
          const existing = this.keys.get(row.kid);
          let loaded: LoadedKey;
          if (existing) {
            loaded = { ...existing, row: publicRow };
          } else {
            const key = createPublicKey({ key: row.publicJwk as unknown as JsonWebKey, format: 'jwk' });
            if (!keyMatchesAlg(key, row.alg)) {
              this.logger?.warn(
                { kid: row.kid, alg: row.alg },
                'signing key does not fit its algorithm; ignored',
              );
              continue;
            }
            loaded = {
              row: publicRow,
              sealed: privateKeyEnc,
              verification: { kid: row.kid, alg: row.alg, use: row.use, key },
            };
          }
          keys.set(row.kid, loaded);
          if (row.state === 'current') currentKids.set(setName(row.alg, row.use), row.kid);
        }
        this.keys = keys;
        this.currentKids = currentKids;
        this.loadedAt = this.now();
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  /** The JWKS: next, current and retiring public keys, oldest first. */
  async jwks(): Promise<{ keys: PublicJwk[] }> {
    if (this.now() - this.loadedAt >= JWKS_SNAPSHOT_MS) await this.reload();
    return { keys: [...this.keys.values()].map((loaded) => ({ ...loaded.row.publicJwk })) };
  }

  /**
   * The signer of the set's current key. Cached per kid: after the first call for a kid this
   * neither queries nor decrypts. A set that does not exist yet (say EdDSA, asked for by one
   * audience) is created on demand.
   */
  async signerFor(alg: SigningAlg, use: KeyUse = 'access_token'): Promise<JwtSigner> {
    const name = setName(alg, use);
    let kid = this.currentKids.get(name);
    if (kid === undefined) {
      await this.reload();
      kid = this.currentKids.get(name);
      if (kid === undefined) {
        await this.ensureSet(alg, use);
        await this.reload();
        kid = this.currentKids.get(name);
      }
      if (kid === undefined) throw new Error(`No current ${alg} ${use} signing key`);
    }
    const loaded = this.keys.get(kid) as LoadedKey;
    if (loaded.signer) return loaded.signer;
    const der = open(this.boxKey, loaded.sealed, kid);
    const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    der.fill(0);
    loaded.signer = createJwtSigner(kid, alg, privateKey);
    return loaded.signer;
  }

  /** The set's current signer when already decrypted, else undefined: the synchronous fast path of signerFor. */
  cachedSigner(alg: SigningAlg, use: KeyUse = 'access_token'): JwtSigner | undefined {
    const kid = this.currentKids.get(setName(alg, use));
    return kid === undefined ? undefined : this.keys.get(kid)?.signer;
  }

  /** The current access-token signer for `alg`. */
  currentSigner(alg: SigningAlg = 'ES256'): Promise<JwtSigner> {
    return this.signerFor(alg, 'access_token');
  }

  /** A published key from the snapshot, or undefined; never queries. The hot path of verification. */
  cachedVerificationKey(kid: string): VerificationKey | undefined {
    return this.keys.get(kid)?.verification;
  }

  /**
   * A published key by kid. An unknown kid reloads the snapshot, at most once per second
   * whatever the callers send, so junk kids cannot hammer the database.
   */
  async verificationKey(kid: string): Promise<VerificationKey | undefined> {
    const cached = this.keys.get(kid);
    if (cached) return cached.verification;
    const now = this.now();
    if (this.loading) {
      await this.loading;
    } else if (now - this.lastUnknownKidReload >= RELOAD_INTERVAL_MS) {
      this.lastUnknownKidReload = now;
      await this.reload();
    }
    return this.keys.get(kid)?.verification;
  }

  /** Resolver for verifyJwt: synchronous when the kid is cached. */
  readonly getKey = (kid: string): VerificationKey | undefined | Promise<VerificationKey | undefined> =>
    this.keys.get(kid)?.verification ?? this.verificationKey(kid);

  /** Every key with its dates, newest first (for `gatehouse keys list`). */
  list(): Promise<SigningKeyRow[]> {
    return listAllKeys(this.db);
  }
}

/** The service with the configured lifetimes; the caller runs start() and stop(). */
export function createSigningKeys(
  ctx: Pick<AppContext, 'config' | 'db' | 'masterSecret'> & {
    logger?: Pick<Logger, 'info' | 'warn'>;
    audit?: AuditLog;
  },
  options: SigningKeyOptions = {},
): SigningKeyService {
  return new SigningKeyService(ctx.db, ctx.masterSecret.secret, {
    jwksCacheSeconds: ctx.config.jwksCacheSeconds,
    maxTokenTtlSeconds: ctx.config.accessTokenTtlSeconds,
    rotationIntervalDays: ctx.config.keyRotationDays,
    ...(ctx.logger ? { logger: ctx.logger } : {}),
    ...(ctx.audit ? { audit: ctx.audit } : {}),
    ...options,
  });
}
