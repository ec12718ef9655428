import { createHmac, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';

/**
 * Hand-made hostile and broken JWTs for the verification tests (src/tokens/*.test.ts). Each
 * is built byte by byte with node:crypto, not with the code under test, so a bug in our
 * encoder cannot hide the same bug in the verifier.
 */
export interface CraftKit {
  /** A kid the verifier knows, of an ES256 key. */
  kid: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
  issuer: string;
  audience: string;
  /** Verifier's clock, in seconds. */
  nowSeconds: number;
}

export interface CraftedToken {
  name: string;
  token: unknown;
  /** The InvalidTokenError reasons accepted (several when it depends on the allowlist). */
  reasons: string[];
}

export function b64(value: unknown): string {
  return Buffer.from(typeof value === 'string' ? value : JSON.stringify(value), 'utf8').toString('base64url');
}

export function es256(
  input: string,
  key: KeyObject,
  dsaEncoding: 'ieee-p1363' | 'der' = 'ieee-p1363',
): string {
  return sign('sha256', Buffer.from(input), { key, dsaEncoding }).toString('base64url');
}

/** A correctly signed ES256 token with the given header and claims. */
export function signedToken(header: Record<string, unknown>, claims: unknown, key: KeyObject): string {
  const input = `${b64(header)}.${b64(claims)}`;
  return `${input}.${es256(input, key)}`;
}

export function validClaims(
  kit: Pick<CraftKit, 'issuer' | 'audience' | 'nowSeconds'>,
): Record<string, unknown> {
  return {
    iss: kit.issuer,
    sub: 'user-1',
    aud: kit.audience,
    iat: kit.nowSeconds - 10,
    nbf: kit.nowSeconds - 10,
    exp: kit.nowSeconds + 600,
    jti: 'jti-0123456789abcdef',
    client_id: 'client-1',
    scope: 'models:invoke',
    sid: 'session-1',
    roles: ['member'],
    perms: ['models:invoke'],
    ver: 1,
  };
}

export function craftedTokens(kit: CraftKit): CraftedToken[] {
  const header = { alg: 'ES256', typ: 'at+jwt', kid: kit.kid };
  const claims = validClaims(kit);
  const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const attackerJwk = attacker.publicKey.export({ format: 'jwk' });
  const ours = (h: Record<string, unknown>, c: unknown = claims) => signedToken(h, c, kit.privateKey);
  const theirs = (h: Record<string, unknown>, c: unknown = claims) => signedToken(h, c, attacker.privateKey);
  const without = (name: string) => {
    const copy = { ...claims };
    delete copy[name];
    return copy;
  };
  const valid = ours(header);
  const [h, p, s] = valid.split('.') as [string, string, string];
  const pem = kit.publicKey.export({ format: 'pem', type: 'spki' }) as string;
  const hmac = (alg: string, secret: string) => {
    const input = `${b64({ alg, typ: 'at+jwt', kid: kit.kid })}.${b64(claims)}`;
    return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
  };
  const tamperedClaims = b64({ ...claims, sub: 'admin' });

  return [
    {
      name: 'alg none, empty signature',
      token: `${b64({ ...header, alg: 'none' })}.${p}.`,
      reasons: ['alg_none'],
    },
    { name: 'alg NoNe', token: `${b64({ ...header, alg: 'NoNe' })}.${p}.${s}`, reasons: ['alg_none'] },
    {
      name: 'HS256 signed with the public key PEM as HMAC secret',
      token: hmac('HS256', pem),
      reasons: ['alg_not_allowed'],
    },
    {
      name: 'ES256 header over an HMAC made with the public key PEM',
      token: (() => {
        const input = `${h}.${p}`;
        return `${input}.${createHmac('sha256', pem).update(input).digest('base64url')}`;
      })(),
      reasons: ['bad_signature'],
    },
    { name: 'alg missing', token: ours({ typ: 'at+jwt', kid: kit.kid }), reasons: ['malformed'] },
    {
      name: 'alg PS256 (not configured)',
      token: ours({ ...header, alg: 'PS256' }),
      reasons: ['alg_not_allowed'],
    },
    {
      name: 'RS256 header on an ES256 key',
      token: ours({ ...header, alg: 'RS256' }),
      reasons: ['alg_mismatch', 'alg_not_allowed'],
    },
    {
      name: 'embedded jwk of the attacker',
      token: theirs({ ...header, jwk: attackerJwk }),
      reasons: ['header_jwk'],
    },
    {
      name: 'jku pointing elsewhere',
      token: theirs({ ...header, jku: 'https://evil.example/jwks.json' }),
      reasons: ['header_jku'],
    },
    {
      name: 'x5u pointing elsewhere',
      token: theirs({ ...header, x5u: 'https://evil.example/cert.pem' }),
      reasons: ['header_x5u'],
    },
    { name: 'x5c chain', token: theirs({ ...header, x5c: ['MIIB'] }), reasons: ['header_x5c'] },
    {
      name: 'crit present',
      token: ours({ ...header, crit: ['exp'], exp: 1 }),
      reasons: ['crit_unsupported'],
    },
    {
      name: 'kid path traversal',
      token: theirs({ ...header, kid: '../../etc/passwd' }),
      reasons: ['malformed_kid'],
    },
    {
      name: 'kid SQL injection',
      token: theirs({ ...header, kid: "' OR 1=1 --" }),
      reasons: ['malformed_kid'],
    },
    { name: 'kid not a string', token: theirs({ ...header, kid: 1 }), reasons: ['malformed_kid'] },
    { name: 'kid missing', token: theirs({ alg: 'ES256', typ: 'at+jwt' }), reasons: ['malformed_kid'] },
    { name: 'kid too long', token: theirs({ ...header, kid: 'a'.repeat(200) }), reasons: ['malformed_kid'] },
    {
      name: 'unknown but well-formed kid',
      token: theirs({ ...header, kid: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' }),
      reasons: ['unknown_kid'],
    },
    { name: 'our kid, attacker signature', token: theirs(header), reasons: ['bad_signature'] },
    {
      name: 'payload changed after signing',
      token: `${h}.${tamperedClaims}.${s}`,
      reasons: ['bad_signature'],
    },
    {
      name: 'DER-encoded ECDSA signature',
      token: `${h}.${p}.${es256(`${h}.${p}`, kit.privateKey, 'der')}`,
      reasons: ['bad_signature'],
    },
    { name: 'signature truncated', token: `${h}.${p}.${s.slice(0, -4)}`, reasons: ['bad_signature'] },
    { name: 'typ JWT', token: ours({ ...header, typ: 'JWT' }), reasons: ['wrong_typ'] },
    { name: 'typ missing', token: ours({ alg: 'ES256', kid: kit.kid }), reasons: ['wrong_typ'] },
    {
      name: 'typ of an ID token',
      token: ours({ ...header, typ: 'application/jwt' }),
      reasons: ['wrong_typ'],
    },
    {
      name: 'wrong issuer',
      token: ours(header, { ...claims, iss: 'https://evil.example' }),
      reasons: ['wrong_issuer'],
    },
    { name: 'issuer missing', token: ours(header, without('iss')), reasons: ['wrong_issuer'] },
    {
      name: 'wrong audience',
      token: ours(header, { ...claims, aud: 'https://other.example' }),
      reasons: ['wrong_audience'],
    },
    { name: 'audience missing', token: ours(header, without('aud')), reasons: ['wrong_audience'] },
    {
      name: 'expired beyond the clock skew',
      token: ours(header, { ...claims, exp: kit.nowSeconds - 31, iat: kit.nowSeconds - 900 }),
      reasons: ['expired'],
    },
    {
      name: 'nbf in the future',
      token: ours(header, { ...claims, nbf: kit.nowSeconds + 120 }),
      reasons: ['not_yet_valid'],
    },
    {
      name: 'iat in the future',
      token: ours(header, { ...claims, iat: kit.nowSeconds + 120 }),
      reasons: ['issued_in_future'],
    },
    {
      name: 'exp as a string',
      token: ours(header, { ...claims, exp: String(kit.nowSeconds + 600) }),
      reasons: ['malformed_exp'],
    },
    { name: 'missing jti', token: ours(header, without('jti')), reasons: ['missing_jti'] },
    { name: 'missing sub', token: ours(header, without('sub')), reasons: ['missing_sub'] },
    { name: 'missing exp', token: ours(header, without('exp')), reasons: ['missing_exp'] },
    { name: 'claims are an array', token: ours(header, [claims]), reasons: ['malformed'] },
    { name: 'extra segment', token: `${valid}.${s}`, reasons: ['malformed'] },
    { name: 'five segments (JWE shape)', token: `${h}.${p}.${s}.${s}.${s}`, reasons: ['malformed'] },
    { name: 'two segments', token: `${h}.${p}`, reasons: ['malformed'] },
    { name: 'garbage base64', token: '!!!.@@@.###', reasons: ['malformed'] },
    { name: 'padded base64', token: `${h}==.${p}.${s}`, reasons: ['malformed'] },
    { name: 'header is not JSON', token: `${b64('not json')}.${p}.${s}`, reasons: ['malformed'] },
    { name: 'header is an array', token: `${b64([header])}.${p}.${s}`, reasons: ['malformed'] },
    { name: 'header is null', token: `${b64('null')}.${p}.${s}`, reasons: ['malformed'] },
    { name: 'empty string', token: '', reasons: ['malformed'] },
    { name: 'only dots', token: '..', reasons: ['malformed'] },
    { name: 'not a string', token: { token: valid }, reasons: ['malformed'] },
    { name: 'null', token: null, reasons: ['malformed'] },
    { name: 'huge token', token: `${h}.${b64('x'.repeat(20_000))}.${s}`, reasons: ['too_long'] },
  ];
}
