import { sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { DomainError } from '../errors.ts';
import { derToP1363, p1363ToDer } from './ecdsa-signature.ts';

/**
 * Compact JWS signing and verification on the hot path, with `node:crypto` and pre-imported
 * KeyObjects: measured in bench/access-token-issuance.bench.ts, `jose` costs several times the
 * raw signature here (it re-serialises and re-checks the key on every call). The format is
 * plain RFC 7515/7519 (jose verifies what we sign; the tests prove it). Verification follows
 * RFC 8725: an algorithm allowlist, the key's own algorithm must equal the header's, no keys
 * or key URLs taken from the token, no `crit`, and never any network fetch.
 */
export type SigningAlg = 'ES256' | 'RS256' | 'EdDSA';
export const SIGNING_ALGS: readonly SigningAlg[] = ['ES256', 'RS256', 'EdDSA'];

/**
 * A token that must be refused. `reason` is for logs and audit only (e.g. 'expired',
 * 'bad_signature'); callers see one generic 401 (RFC 6750 error="invalid_token").
 */
export class InvalidTokenError extends DomainError {
  readonly reason: string;
  constructor(reason: string, options: { cause?: unknown } = {}) {
    super('unauthorized', 'The access token is invalid or has expired', {
      headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
      ...(options.cause === undefined ? {} : { cause: options.cause }),
    });
    this.name = 'InvalidTokenError';
    this.reason = reason;
  }
}

interface AlgSpec {
  hash: string | null;
  keyType: string;
  /** Exact signature length in bytes, when fixed. */
  signatureBytes?: number;
  /** ECDSA: JWS carries r || s, each this many bytes; node:crypto works in DER (ecdsa-signature.ts). */
  ecdsaComponentBytes?: number;
}

const ALGS: Record<SigningAlg, AlgSpec> = {
  ES256: { hash: 'sha256', keyType: 'ec', signatureBytes: 64, ecdsaComponentBytes: 32 },
  RS256: { hash: 'sha256', keyType: 'rsa' },
  EdDSA: { hash: null, keyType: 'ed25519', signatureBytes: 64 },
};

/** True when the KeyObject is of the kind the algorithm needs (P-256 for ES256, RSA >= 2048 bits, Ed25519). */
export function keyMatchesAlg(key: KeyObject, alg: SigningAlg): boolean {
  const spec = ALGS[alg];
  if (!spec || key.asymmetricKeyType !== spec.keyType) return false;
  const details = key.asymmetricKeyDetails;
  if (alg === 'ES256') return details?.namedCurve === 'prime256v1';
  if (alg === 'RS256') return (details?.modulusLength ?? 0) >= 2048;
  return true;
}

export interface JwtSigner {
  readonly kid: string;
  readonly alg: SigningAlg;
  /** Signs the claims as a compact JWS with the header `{ alg, typ, kid }`. */
  sign(claims: object, typ?: string): string;
}

function encodeJson(value: unknown): string {
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

/** A signer around an imported private key; the encoded header is built once per typ. */
export function createJwtSigner(kid: string, alg: SigningAlg, privateKey: KeyObject): JwtSigner {
  if (privateKey.type !== 'private' || !keyMatchesAlg(privateKey, alg)) {
    throw new TypeError(`The private key of ${kid} does not fit ${alg}`);
  }
  const spec = ALGS[alg];
  const ecdsaBytes = spec.ecdsaComponentBytes;
  const headers = new Map<string, string>();
  const headerFor = (typ: string): string => {
    let encoded = headers.get(typ);
    if (encoded === undefined) {
      encoded = encodeJson({ alg, typ, kid });
      headers.set(typ, encoded);
    }
    return encoded;
  };
  return {
    kid,
    alg,
    sign(claims, typ = 'at+jwt') {
      const input = `${headerFor(typ)}.${encodeJson(claims)}`;
      // The signing input is ASCII (base64url), so latin1 is the cheapest exact conversion.
      const signed = cryptoSign(spec.hash, Buffer.from(input, 'latin1'), privateKey);
      const signature = ecdsaBytes === undefined ? signed : derToP1363(signed, ecdsaBytes);
      return `${input}.${signature.toString('base64url')}`;
    },
  };
}

export interface VerificationKey {
  kid: string;
  alg: SigningAlg;
  /** What the key signs (e.g. 'access_token'); checked when the caller asks for a use. */
  use?: string;
  key: KeyObject;
}

export interface VerifyJwtOptions {
  /** Accepted algorithms: the configured ones only. 'none' and HMAC are never accepted. */
  algorithms: readonly SigningAlg[];
  /** Resolves a kid to a public key (cached; may reload, rate limited); undefined when unknown. */
  getKey(kid: string): VerificationKey | undefined | Promise<VerificationKey | undefined>;
  /** Accepted `typ` values, compared case-insensitively with the `application/` prefix optional. */
  typ: readonly string[];
  issuer: string;
  /** The token's `aud` (string or array) must contain one of these. */
  audience: string | readonly string[];
  /** When set, the key must have been made for this use (an ID-token key does not verify access tokens). */
  keyUse?: string;
  /** Claims that must be present and non-empty; default exp, sub, jti. */
  requiredClaims?: readonly string[];
  /** Allowed clock difference for exp, nbf and iat (default 30 s). */
  clockToleranceSeconds?: number;
  /** Milliseconds since the epoch (default Date.now). */
  now?: () => number;
  /** Longest accepted token (default 8 KiB): bounds the work an attacker can ask for. */
  maxLength?: number;
}

export interface JwtHeader {
  alg: SigningAlg;
  typ: string;
  kid: string;
  [member: string]: unknown;
}

export interface VerifiedJwt<Claims = Record<string, unknown>> {
  header: JwtHeader;
  claims: Claims;
  key: VerificationKey;
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;
// Our kids are RFC 7638 thumbprints; anything outside this shape is refused before any lookup.
const KID = /^[A-Za-z0-9_-]{1,128}$/;
const FORBIDDEN_HEADER_MEMBERS = ['jwk', 'jku', 'x5u', 'x5c'] as const;
const DEFAULT_REQUIRED: readonly string[] = ['exp', 'sub', 'jti'];

function decodeSegment(segment: string): Buffer {
  if (!BASE64URL.test(segment) || segment.length % 4 === 1) throw new InvalidTokenError('malformed');
  return Buffer.from(segment, 'base64url');
}

function parseObject(segment: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(decodeSegment(segment).toString('utf8'));
  } catch (error) {
    if (error instanceof InvalidTokenError) throw error;
    throw new InvalidTokenError('malformed');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidTokenError('malformed');
  }
  return value as Record<string, unknown>;
}

function normaliseTyp(typ: string): string {
  const lower = typ.toLowerCase();
  return lower.startsWith('application/') ? lower.slice('application/'.length) : lower;
}

function numericDate(claims: Record<string, unknown>, name: string): number | undefined {
  const value = claims[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new InvalidTokenError(`malformed_${name}`);
  return value;
}

async function verifyUnchecked(token: unknown, options: VerifyJwtOptions): Promise<VerifiedJwt> {
  if (typeof token !== 'string' || token.length === 0) throw new InvalidTokenError('malformed');
  if (token.length > (options.maxLength ?? 8192)) throw new InvalidTokenError('too_long');
  const segments = token.split('.');
  if (segments.length !== 3) throw new InvalidTokenError('malformed');
  const [headerSegment, payloadSegment, signatureSegment] = segments as [string, string, string];

  const header = parseObject(headerSegment);
  const alg = header.alg;
  if (typeof alg !== 'string') throw new InvalidTokenError('malformed');
  if (alg.toLowerCase() === 'none') throw new InvalidTokenError('alg_none');
  if (!(options.algorithms as readonly string[]).includes(alg) || !Object.hasOwn(ALGS, alg)) {
    throw new InvalidTokenError('alg_not_allowed');
  }
  for (const member of FORBIDDEN_HEADER_MEMBERS) {
    if (Object.hasOwn(header, member)) throw new InvalidTokenError(`header_${member}`);
  }
  if (Object.hasOwn(header, 'crit')) throw new InvalidTokenError('crit_unsupported');
  const typ = header.typ;
  if (
    typeof typ !== 'string' ||
    !options.typ.some((accepted) => normaliseTyp(accepted) === normaliseTyp(typ))
  ) {
    throw new InvalidTokenError('wrong_typ');
  }
  const kid = header.kid;
  if (typeof kid !== 'string' || !KID.test(kid)) throw new InvalidTokenError('malformed_kid');

  let key: VerificationKey | undefined;
  try {
    key = await options.getKey(kid);
  } catch (error) {
    throw new InvalidTokenError('key_unavailable', { cause: error });
  }
  if (!key) throw new InvalidTokenError('unknown_kid');
  // The key decides the algorithm, never the token: this is what stops HS256-with-the-public-key.
  if (key.alg !== alg || !keyMatchesAlg(key.key, key.alg)) throw new InvalidTokenError('alg_mismatch');
  if (options.keyUse !== undefined && key.use !== options.keyUse)
    throw new InvalidTokenError('wrong_key_use');

  const spec = ALGS[key.alg];
  const signature = decodeSegment(signatureSegment);
  if (
    (spec.signatureBytes !== undefined && signature.length !== spec.signatureBytes) ||
    signature.toString('base64url') !== signatureSegment
  ) {
    throw new InvalidTokenError('bad_signature');
  }
  const input = Buffer.from(`${headerSegment}.${payloadSegment}`, 'latin1');
  const checked =
    spec.ecdsaComponentBytes === undefined ? signature : p1363ToDer(signature, spec.ecdsaComponentBytes);
  if (!checked || !cryptoVerify(spec.hash, input, key.key, checked))
    throw new InvalidTokenError('bad_signature');

  const claims = parseObject(payloadSegment);
  for (const name of options.requiredClaims ?? DEFAULT_REQUIRED) {
    const value = claims[name];
    if (value === undefined || value === null || value === '') throw new InvalidTokenError(`missing_${name}`);
  }
  for (const name of ['sub', 'jti', 'iss']) {
    if (claims[name] !== undefined && typeof claims[name] !== 'string')
      throw new InvalidTokenError(`malformed_${name}`);
  }
  const now = (options.now ?? Date.now)() / 1000;
  const tolerance = options.clockToleranceSeconds ?? 30;
  const exp = numericDate(claims, 'exp');
  if (exp === undefined) throw new InvalidTokenError('missing_exp');
  if (now - tolerance >= exp) throw new InvalidTokenError('expired');
  const nbf = numericDate(claims, 'nbf');
  if (nbf !== undefined && nbf > now + tolerance) throw new InvalidTokenError('not_yet_valid');
  const iat = numericDate(claims, 'iat');
  if (iat !== undefined && iat > now + tolerance) throw new InvalidTokenError('issued_in_future');
  if (claims.iss !== options.issuer) throw new InvalidTokenError('wrong_issuer');
  const accepted = typeof options.audience === 'string' ? [options.audience] : options.audience;
  const aud = claims.aud;
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
  if (!audiences.some((value) => typeof value === 'string' && accepted.includes(value))) {
    throw new InvalidTokenError('wrong_audience');
  }
  return { header: header as JwtHeader, claims, key };
}

/** Verifies a compact JWS and its registered claims. Throws only InvalidTokenError. */
export async function verifyJwt<Claims = Record<string, unknown>>(
  token: unknown,
  options: VerifyJwtOptions,
): Promise<VerifiedJwt<Claims>> {
  try {
    return (await verifyUnchecked(token, options)) as VerifiedJwt<Claims>;
  } catch (error) {
    if (error instanceof InvalidTokenError) throw error;
    throw new InvalidTokenError('malformed', { cause: error });
  }
}
