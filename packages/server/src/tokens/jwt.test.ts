import assert from 'node:assert/strict';
import { generateKeyPairSync, randomInt } from 'node:crypto';
import { describe, it } from 'node:test';
import { createLocalJWKSet, jwtVerify } from 'jose';
import {
  b64,
  type CraftKit,
  craftedTokens,
  signedToken,
  validClaims,
} from '../../test/support/crafted-tokens.ts';
import { DomainError } from '../errors.ts';
import {
  createJwtSigner,
  InvalidTokenError,
  type SigningAlg,
  type VerificationKey,
  type VerifyJwtOptions,
  verifyJwt,
} from './jwt.ts';

const ISSUER = 'https://auth.example.com';
const AUDIENCE = 'https://ml.example.com';
const NOW_MS = 1_800_000_000_000;
const NOW = NOW_MS / 1000;

function keyPair(alg: SigningAlg) {
  if (alg === 'ES256') return generateKeyPairSync('ec', { namedCurve: 'P-256' });
  if (alg === 'RS256') return generateKeyPairSync('rsa', { modulusLength: 2048 });
  return generateKeyPairSync('ed25519');
}

const pairs = {
  ES256: { kid: 'es256-key', ...keyPair('ES256') },
  RS256: { kid: 'rs256-key', ...keyPair('RS256') },
  EdDSA: { kid: 'eddsa-key', ...keyPair('EdDSA') },
};

function verifier(algorithms: SigningAlg[] = ['ES256', 'RS256', 'EdDSA']) {
  const lookups: string[] = [];
  const keys = new Map<string, VerificationKey>(
    (Object.entries(pairs) as [SigningAlg, (typeof pairs)['ES256']][]).map(([alg, pair]) => [
      pair.kid,
      { kid: pair.kid, alg, use: 'access_token', key: pair.publicKey },
    ]),
  );
  const options: VerifyJwtOptions = {
    algorithms,
    getKey: (kid) => {
      lookups.push(kid);
      return keys.get(kid);
    },
    typ: ['at+jwt', 'application/at+jwt'],
    issuer: ISSUER,
    audience: AUDIENCE,
    keyUse: 'access_token',
    now: () => NOW_MS,
  };
  return { options, lookups };
}

const kit: CraftKit = {
  kid: pairs.ES256.kid,
  privateKey: pairs.ES256.privateKey,
  publicKey: pairs.ES256.publicKey,
  issuer: ISSUER,
  audience: AUDIENCE,
  nowSeconds: NOW,
};

async function reasonOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof InvalidTokenError, `expected InvalidTokenError, got ${String(error)}`);
    return error.reason;
  }
  assert.fail('the token was accepted');
}

describe('JWT signing', () => {
  for (const alg of ['ES256', 'RS256', 'EdDSA'] as const) {
    it(`${alg}: signs a standard compact JWS that we and jose both verify`, async () => {
      const pair = pairs[alg];
      const signer = createJwtSigner(pair.kid, alg, pair.privateKey);
      const token = signer.sign(validClaims(kit));
      const [header] = token.split('.');
      assert.deepEqual(JSON.parse(Buffer.from(header as string, 'base64url').toString()), {
        alg,
        typ: 'at+jwt',
        kid: pair.kid,
      });
      assert.match(token, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);

      const { options } = verifier();
      const verified = await verifyJwt(token, options);
      assert.equal(verified.claims.sub, 'user-1');
      assert.equal(verified.key.kid, pair.kid);

      const jwk = { ...pair.publicKey.export({ format: 'jwk' }), kid: pair.kid, alg, use: 'sig' };
      const result = await jwtVerify(token, createLocalJWKSet({ keys: [jwk] }), {
        issuer: ISSUER,
        audience: AUDIENCE,
        typ: 'at+jwt',
        currentDate: new Date(NOW_MS),
        algorithms: [alg],
      });
      assert.equal(result.payload.sub, 'user-1');
      assert.equal(result.protectedHeader.kid, pair.kid);
    });
  }

  it('refuses a private key that does not fit the algorithm', () => {
    assert.throws(() => createJwtSigner('k', 'ES256', pairs.RS256.privateKey), TypeError);
    assert.throws(() => createJwtSigner('k', 'RS256', pairs.ES256.privateKey), TypeError);
    assert.throws(() => createJwtSigner('k', 'ES256', pairs.ES256.publicKey), TypeError);
  });
});

describe('JWT verification', () => {
  it('refuses every hand-crafted bad token with InvalidTokenError, looking up only well-formed kids', async () => {
    for (const algorithms of [['ES256'], ['ES256', 'RS256', 'EdDSA']] as SigningAlg[][]) {
      const { options, lookups } = verifier(algorithms);
      for (const crafted of craftedTokens(kit)) {
        const reason = await reasonOf(verifyJwt(crafted.token, options));
        assert.ok(
          crafted.reasons.includes(reason),
          `${crafted.name}: got ${reason}, expected ${crafted.reasons}`,
        );
      }
      assert.ok(
        lookups.every((kid) => /^[A-Za-z0-9_-]+$/.test(kid)),
        `only well-formed kids are looked up: ${lookups.join(', ')}`,
      );
    }
  });

  it('the key decides the algorithm: an ES256 header on an RS256 key fails even when both are allowed', async () => {
    const { options } = verifier();
    const token = signedToken(
      { alg: 'ES256', typ: 'at+jwt', kid: pairs.RS256.kid },
      validClaims(kit),
      kit.privateKey,
    );
    assert.equal(await reasonOf(verifyJwt(token, options)), 'alg_mismatch');
  });

  it('an algorithm left off the allowlist is refused even with a valid signature', async () => {
    const token = createJwtSigner(pairs.EdDSA.kid, 'EdDSA', pairs.EdDSA.privateKey).sign(validClaims(kit));
    assert.equal(await reasonOf(verifyJwt(token, verifier(['ES256']).options)), 'alg_not_allowed');
  });

  it('accepts typ at+jwt in any case, with or without the application/ prefix', async () => {
    const { options } = verifier();
    for (const typ of ['at+jwt', 'application/at+jwt', 'AT+JWT', 'Application/At+Jwt']) {
      const token = createJwtSigner(kit.kid, 'ES256', kit.privateKey).sign(validClaims(kit), typ);
      await verifyJwt(token, options);
    }
  });

  it('allows 30 s of clock skew by default, and a configured amount', async () => {
    const { options } = verifier();
    const signer = createJwtSigner(kit.kid, 'ES256', kit.privateKey);
    const claims = validClaims(kit);
    await verifyJwt(signer.sign({ ...claims, exp: NOW - 29 }), options);
    await verifyJwt(signer.sign({ ...claims, nbf: NOW + 29, iat: NOW + 29 }), options);
    assert.equal(await reasonOf(verifyJwt(signer.sign({ ...claims, exp: NOW - 30 }), options)), 'expired');
    const strict = { ...options, clockToleranceSeconds: 0 };
    assert.equal(await reasonOf(verifyJwt(signer.sign({ ...claims, exp: NOW }), strict)), 'expired');
    assert.equal(
      await reasonOf(verifyJwt(signer.sign({ ...claims, nbf: NOW + 1 }), strict)),
      'not_yet_valid',
    );
    await verifyJwt(signer.sign({ ...claims, exp: NOW + 1 }), strict);
  });

  it('accepts an audience array containing the expected audience, and several accepted audiences', async () => {
    const { options } = verifier();
    const signer = createJwtSigner(kit.kid, 'ES256', kit.privateKey);
    await verifyJwt(signer.sign({ ...validClaims(kit), aud: ['https://x.example', AUDIENCE] }), options);
    await verifyJwt(signer.sign({ ...validClaims(kit), aud: 'https://x.example' }), {
      ...options,
      audience: [AUDIENCE, 'https://x.example'],
    });
    assert.equal(
      await reasonOf(verifyJwt(signer.sign({ ...validClaims(kit), aud: [1, 2] }), options)),
      'wrong_audience',
    );
  });

  it('refuses a key made for another use', async () => {
    const { options } = verifier();
    const token = createJwtSigner(kit.kid, 'ES256', kit.privateKey).sign(validClaims(kit));
    assert.equal(await reasonOf(verifyJwt(token, { ...options, keyUse: 'id_token' })), 'wrong_key_use');
  });

  it('turns a failing key lookup into InvalidTokenError', async () => {
    const { options } = verifier();
    const token = createJwtSigner(kit.kid, 'ES256', kit.privateKey).sign(validClaims(kit));
    const error = await verifyJwt(token, {
      ...options,
      getKey: async () => {
        throw new Error('database down');
      },
    }).catch((e: unknown) => e);
    assert.ok(error instanceof InvalidTokenError);
    assert.equal(error.reason, 'key_unavailable');
  });

  it('maps to a generic 401 problem with WWW-Authenticate; the reason stays internal', () => {
    const error = new InvalidTokenError('bad_signature');
    assert.ok(error instanceof DomainError);
    assert.ok(error instanceof Error);
    assert.equal(error.kind, 'unauthorized');
    assert.equal(error.headers['www-authenticate'], 'Bearer error="invalid_token"');
    assert.doesNotMatch(error.message, /signature/);
  });

  it('survives random mutations of a valid token: accepted unchanged or refused with InvalidTokenError', async () => {
    const { options } = verifier();
    const token = createJwtSigner(kit.kid, 'ES256', kit.privateKey).sign(validClaims(kit));
    const alphabet = 'ABCxyz019-_.=+/ {}"\u0000\u00e9';
    for (let i = 0; i < 1500; i++) {
      const chars = [...token];
      const edits = 1 + randomInt(3);
      for (let e = 0; e < edits; e++) {
        const at = randomInt(chars.length);
        const op = randomInt(3);
        if (op === 0) chars[at] = alphabet[randomInt(alphabet.length)] as string;
        else if (op === 1) chars.splice(at, 1);
        else chars.splice(at, 0, alphabet[randomInt(alphabet.length)] as string);
      }
      const mutated = chars.join('');
      try {
        const result = await verifyJwt(mutated, options);
        // Only a change in base64url padding bits of the header or payload can leave the bytes intact.
        assert.equal(result.claims.sub, 'user-1');
      } catch (error) {
        assert.ok(
          error instanceof InvalidTokenError,
          `mutation ${JSON.stringify(mutated)} threw ${String(error)}`,
        );
      }
    }
  });

  it('garbage headers with prototype keys are refused cleanly', async () => {
    const { options } = verifier();
    const header = `{"__proto__":{"alg":"ES256"},"typ":"at+jwt","kid":"${kit.kid}"}`;
    const token = `${b64(header)}.${b64(validClaims(kit))}.AAAA`;
    assert.equal(await reasonOf(verifyJwt(token, options)), 'malformed');
  });
});
