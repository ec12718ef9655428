import { randomFillSync } from 'node:crypto';
import type { AppContext } from '../app.ts';
import { InvalidTokenError, type SigningAlg, verifyJwt } from './jwt.ts';
import type { SigningKeyService } from './signing-keys.ts';

/** RFC 9068 access token claims, plus Gatehouse's own (client_id, sid, roles, perms, ver). */
export interface AccessTokenClaims {
  iss: string;
  sub: string;
  aud: string;
  exp: number;
  iat: number;
  nbf: number;
  /** 128 random bits, base64url: the denylist key for revocation. */
  jti: string;
  client_id: string;
  /** Space-separated scope tokens (RFC 6749 §3.3). */
  scope: string;
  /** The session or refresh-token family the token belongs to. */
  sid: string;
  roles: string[];
  perms: string[];
  /** The user's token version: bumping it revokes every token issued before. */
  ver: number;
}

export interface IssueAccessTokenInput {
  subject: string;
  audience: string;
  clientId: string;
  scope: string[];
  sessionId: string;
  roles: string[];
  permissions: string[];
  tokenVersion: number;
  /** Shorter or longer than the audience's default; never beyond the signing keys' maximum. */
  ttlSeconds?: number;
  alg?: SigningAlg;
}

export interface IssuedAccessToken {
  token: string;
  /** Seconds until expiry (the token_type=Bearer response's expires_in). */
  expiresIn: number;
  claims: AccessTokenClaims;
}

export interface AudiencePolicy {
  ttlSeconds?: number;
  alg?: SigningAlg;
}

/** Returns true when the token is revoked. Written by the revocation service; may be async. */
export type RevocationCheck = (claims: AccessTokenClaims) => boolean | Promise<boolean>;

export interface AccessTokenOptions {
  /** The `iss` claim: Gatehouse's public URL. */
  issuer: string;
  /** Default lifetime (default 900 s, capped at the signing keys' maxTokenTtlSeconds). */
  defaultTtlSeconds?: number;
  /** Default algorithm (ES256). */
  defaultAlg?: SigningAlg;
  /** Per-audience lifetime and algorithm, e.g. an RS256-only resource server. */
  audiences?: Record<string, AudiencePolicy>;
  /** Further algorithms accepted at issuance and verification; the defaults and audience algs always are. */
  algorithms?: SigningAlg[];
  /** Audience verify() expects when the caller names none: Gatehouse's own API (default: the issuer). */
  defaultAudience?: string;
  clockToleranceSeconds?: number;
  /** Milliseconds since the epoch; default the signing keys' clock. */
  now?: () => number;
  revocationCheck?: RevocationCheck;
}

const ACCESS_TOKEN_TYP = 'at+jwt';
const ACCEPTED_TYP = ['at+jwt', 'application/at+jwt'];
// RFC 6749 scope-token: printable ASCII except space, '"' and '\'.
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

// jti entropy is drawn from a pooled buffer: one randomFillSync per 256 tokens instead of one
// randomBytes call per token (measurably cheaper on the issuance hot path).
const JTI_BYTES = 16;
const jtiPool = Buffer.alloc(JTI_BYTES * 256);
let jtiOffset = jtiPool.length;

/** 128 random bits, base64url. */
export function newJti(): string {
  if (jtiOffset === jtiPool.length) {
    randomFillSync(jtiPool);
    jtiOffset = 0;
  }
  const jti = jtiPool.toString('base64url', jtiOffset, jtiOffset + JTI_BYTES);
  jtiOffset += JTI_BYTES;
  return jti;
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === 'string');
}

/**
 * Issues and verifies JWT access tokens (RFC 9068). Issuance signs with the cached current
 * key of the chosen algorithm and never queries the database; verification is offline too,
 * except for a rate-limited key reload on an unknown kid, then asks the revocation hook.
 */
export class AccessTokenService {
  readonly issuer: string;
  readonly defaultTtlSeconds: number;
  private readonly keys: SigningKeyService;
  private readonly defaultAlg: SigningAlg;
  private readonly audiences: Map<string, AudiencePolicy>;
  private readonly algorithms: SigningAlg[];
  private readonly defaultAudience: string;
  private readonly clockToleranceSeconds: number;
  private readonly now: () => number;
  private revocationCheck: RevocationCheck | undefined;

  constructor(keys: SigningKeyService, options: AccessTokenOptions) {
    this.keys = keys;
    this.issuer = options.issuer;
    this.defaultAlg = options.defaultAlg ?? 'ES256';
    this.audiences = new Map(Object.entries(options.audiences ?? {}));
    this.defaultTtlSeconds = Math.min(options.defaultTtlSeconds ?? 900, keys.maxTokenTtlSeconds);
    this.defaultAudience = options.defaultAudience ?? options.issuer;
    this.clockToleranceSeconds = options.clockToleranceSeconds ?? 30;
    this.now = options.now ?? keys.now;
    this.revocationCheck = options.revocationCheck;
    const algorithms = new Set<SigningAlg>([this.defaultAlg, ...(options.algorithms ?? [])]);
    for (const [audience, policy] of this.audiences) {
      if (policy.alg) algorithms.add(policy.alg);
      // A longer lifetime would outlive the retiring key that signed it: refuse the configuration.
      if (
        policy.ttlSeconds !== undefined &&
        !(policy.ttlSeconds >= 1 && policy.ttlSeconds <= keys.maxTokenTtlSeconds)
      ) {
        throw new RangeError(
          `Access token lifetime for ${audience} must be 1 to ${keys.maxTokenTtlSeconds} seconds (GATEHOUSE_ACCESS_TOKEN_TTL)`,
        );
      }
    }
    this.algorithms = [...algorithms];
  }

  /** Installs the revocation service's check (true = revoked). */
  setRevocationCheck(check: RevocationCheck | undefined): void {
    this.revocationCheck = check;
  }

  async issue(input: IssueAccessTokenInput): Promise<IssuedAccessToken> {
    const policy = this.audiences.get(input.audience);
    const alg = input.alg ?? policy?.alg ?? this.defaultAlg;
    if (!this.algorithms.includes(alg)) throw new RangeError(`${alg} is not configured for access tokens`);
    for (const token of input.scope) {
      if (!SCOPE_TOKEN.test(token)) throw new RangeError(`Invalid scope token ${JSON.stringify(token)}`);
    }
    if (!Number.isSafeInteger(input.tokenVersion)) throw new RangeError('tokenVersion must be an integer');
    const requested = input.ttlSeconds ?? policy?.ttlSeconds ?? this.defaultTtlSeconds;
    if (!Number.isFinite(requested)) throw new RangeError('ttlSeconds must be a number of seconds');
    const ttl = Math.max(1, Math.min(Math.floor(requested), this.keys.maxTokenTtlSeconds));
    const signer =
      this.keys.cachedSigner(alg, 'access_token') ?? (await this.keys.signerFor(alg, 'access_token'));
    const iat = Math.floor(this.now() / 1000);
    const claims: AccessTokenClaims = {
      iss: this.issuer,
      sub: input.subject,
      aud: input.audience,
      exp: iat + ttl,
      iat,
      nbf: iat,
      jti: newJti(),
      client_id: input.clientId,
      scope: input.scope.join(' '),
      sid: input.sessionId,
      roles: input.roles,
      perms: input.permissions.length > 1 ? [...new Set(input.permissions)] : input.permissions,
      ver: input.tokenVersion,
    };
    return { token: signer.sign(claims, ACCESS_TOKEN_TYP), expiresIn: ttl, claims };
  }

  /**
   * Verifies signature, header and claims (audience: the given one, else Gatehouse's own),
   * then the revocation hook. Throws only InvalidTokenError.
   */
  async verify(token: string, options: { audience?: string } = {}): Promise<AccessTokenClaims> {
    const { claims } = await verifyJwt<AccessTokenClaims>(token, {
      algorithms: this.algorithms,
      getKey: this.keys.getKey,
      typ: ACCEPTED_TYP,
      issuer: this.issuer,
      audience: options.audience ?? this.defaultAudience,
      keyUse: 'access_token',
      requiredClaims: ['exp', 'sub', 'jti'],
      clockToleranceSeconds: this.clockToleranceSeconds,
      now: this.now,
    });
    if (
      typeof claims.client_id !== 'string' ||
      typeof claims.scope !== 'string' ||
      typeof claims.sid !== 'string' ||
      !isStringArray(claims.roles) ||
      !isStringArray(claims.perms) ||
      !Number.isSafeInteger(claims.ver)
    ) {
      throw new InvalidTokenError('malformed_claims');
    }
    const check = this.revocationCheck;
    if (check) {
      let revoked: boolean;
      try {
        const answer = check(claims);
        revoked = answer instanceof Promise ? await answer : answer;
      } catch (error) {
        // Fail closed: a token whose revocation status is unknown is not accepted.
        throw new InvalidTokenError('revocation_check_failed', { cause: error });
      }
      if (revoked) throw new InvalidTokenError('revoked');
    }
    return claims;
  }
}

/** The service with the configured issuer and lifetime. */
export function createAccessTokens(
  ctx: Pick<AppContext, 'config'>,
  keys: SigningKeyService,
  options: Partial<AccessTokenOptions> = {},
): AccessTokenService {
  return new AccessTokenService(keys, {
    issuer: ctx.config.publicUrl,
    defaultTtlSeconds: ctx.config.accessTokenTtlSeconds,
    ...options,
  });
}
