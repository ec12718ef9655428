import assert from 'node:assert/strict';
import { createPrivateKey, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { backends, dropSchema, uniqueSchema } from '../../test/support/backends.ts';
import { craftedTokens, signedToken, validClaims } from '../../test/support/crafted-tokens.ts';
import type { Database } from '../storage/database.ts';
import { openDatabase } from '../storage/index.ts';
import { migrate } from '../storage/migrate.ts';
import {
  type AccessTokenClaims,
  AccessTokenService,
  type IssueAccessTokenInput,
  newJti,
} from './access-tokens.ts';
import { InvalidTokenError } from './jwt.ts';
import { deriveKey, open } from './secret-box.ts';
import { SigningKeyService } from './signing-keys.ts';

const SECRET = randomBytes(32).toString('base64url');
const ISSUER = 'https://auth.example.com';
const ML_API = 'https://ml.example.com';
const T0 = 1_800_000_000_000;

const input: IssueAccessTokenInput = {
  subject: 'user-42',
  audience: ML_API,
  clientId: 'cli',
  scope: ['openid', 'models:invoke'],
  sessionId: 'family-7',
  roles: ['member', 'analyst'],
  permissions: ['models:invoke:small', 'models:invoke:small', 'usage:read'],
  tokenVersion: 3,
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

for (const backend of backends()) {
  describe(`access tokens on ${backend.name}`, () => {
    const schema = uniqueSchema();
    let db: Database;
    let keys: SigningKeyService;
    let t = T0;
    const clock = () => t;

    before(async () => {
      db = await openDatabase({ databaseUrl: backend.databaseUrl, dataDir: null, schema });
      await migrate(db);
      keys = new SigningKeyService(db, SECRET, {
        now: clock,
        maxTokenTtlSeconds: 3600,
        keySets: [
          { alg: 'ES256', use: 'access_token' },
          { alg: 'RS256', use: 'id_token' },
        ],
      });
      await keys.ensureKeys();
    });
    after(async () => {
      await db.close();
      await dropSchema({ DATABASE_URL: backend.databaseUrl, GATEHOUSE_DATABASE_SCHEMA: schema });
    });

    const service = (options: Partial<ConstructorParameters<typeof AccessTokenService>[1]> = {}) =>
      new AccessTokenService(keys, { issuer: ISSUER, ...options });

    it('issues RFC 9068 tokens with the Gatehouse claims, verifiable by jose against the JWKS', async () => {
      t = T0;
      const tokens = service();
      const { token, expiresIn, claims } = await tokens.issue(input);
      assert.equal(expiresIn, 900);
      assert.deepEqual(decodeProtectedHeader(token), {
        alg: 'ES256',
        typ: 'at+jwt',
        kid: (await keys.currentSigner()).kid,
      });
      assert.equal(claims.iss, ISSUER);
      assert.equal(claims.sub, 'user-42');
      assert.equal(claims.aud, ML_API);
      assert.equal(claims.iat, T0 / 1000);
      assert.equal(claims.nbf, T0 / 1000);
      assert.equal(claims.exp, T0 / 1000 + 900);
      assert.match(claims.jti, /^[A-Za-z0-9_-]{22}$/);
      assert.equal(claims.client_id, 'cli');
      assert.equal(claims.scope, 'openid models:invoke');
      assert.equal(claims.sid, 'family-7');
      assert.deepEqual(claims.roles, ['member', 'analyst']);
      assert.deepEqual(claims.perms, ['models:invoke:small', 'usage:read']);
      assert.equal(claims.ver, 3);

      const verified = await tokens.verify(token, { audience: ML_API });
      assert.deepEqual(verified, claims);
      const jose = await jwtVerify(token, createLocalJWKSet(await keys.jwks()), {
        issuer: ISSUER,
        audience: ML_API,
        typ: 'at+jwt',
        algorithms: ['ES256'],
        currentDate: new Date(t),
        requiredClaims: ['jti', 'sub', 'exp', 'iat'],
      });
      assert.deepEqual(jose.payload, claims);
    });

    it('jti values are unique and 128-bit', () => {
      const seen = new Set<string>();
      for (let i = 0; i < 5000; i++) seen.add(newJti());
      assert.equal(seen.size, 5000);
      assert.equal(Buffer.from(newJti(), 'base64url').length, 16);
    });

    it('applies per-audience lifetime and algorithm; RS256 and EdDSA tokens verify too (also with jose)', async () => {
      t = T0;
      const tokens = service({
        audiences: {
          [ML_API]: { ttlSeconds: 300, alg: 'RS256' },
          'https://edge.example.com': { alg: 'EdDSA' },
        },
      });
      const rs = await tokens.issue(input);
      assert.equal(rs.expiresIn, 300);
      assert.equal(decodeProtectedHeader(rs.token).alg, 'RS256');
      const ed = await tokens.issue({ ...input, audience: 'https://edge.example.com' });
      assert.equal(ed.expiresIn, 900);
      assert.equal(decodeProtectedHeader(ed.token).alg, 'EdDSA');
      // RS256 access tokens get their own key, not the ID-token key.
      const rsKid = decodeProtectedHeader(rs.token).kid as string;
      assert.equal(keys.cachedVerificationKey(rsKid)?.use, 'access_token');

      await tokens.verify(rs.token, { audience: ML_API });
      await tokens.verify(ed.token, { audience: 'https://edge.example.com' });
      const jwks = createLocalJWKSet(await keys.jwks());
      for (const [token, audience] of [
        [rs.token, ML_API],
        [ed.token, 'https://edge.example.com'],
      ] as const) {
        await jwtVerify(token, jwks, { issuer: ISSUER, audience, typ: 'at+jwt', currentDate: new Date(t) });
      }
      // A service configured for ES256 only refuses them.
      assert.equal(await reasonOf(service().verify(rs.token, { audience: ML_API })), 'alg_not_allowed');
      await assert.rejects(service().issue({ ...input, alg: 'EdDSA' }), RangeError);
    });

    it('caps lifetimes at the signing keys maximum and refuses a configuration beyond it', async () => {
      const tokens = service();
      assert.equal((await tokens.issue({ ...input, ttlSeconds: 60 })).expiresIn, 60);
      assert.equal((await tokens.issue({ ...input, ttlSeconds: 999_999 })).expiresIn, 3600);
      assert.throws(() => service({ audiences: { [ML_API]: { ttlSeconds: 7200 } } }), RangeError);
      await assert.rejects(tokens.issue({ ...input, scope: ['bad scope'] }), RangeError);
      await assert.rejects(tokens.issue({ ...input, ttlSeconds: Number.NaN }), RangeError);
      await assert.rejects(tokens.issue({ ...input, tokenVersion: 1.5 }), RangeError);
    });

    it('checks audience (default: Gatehouse itself), expiry and the revocation hook', async () => {
      t = T0;
      const tokens = service();
      const { token } = await tokens.issue(input);
      assert.equal(await reasonOf(tokens.verify(token)), 'wrong_audience');
      assert.equal(
        await reasonOf(tokens.verify(token, { audience: 'https://other.example' })),
        'wrong_audience',
      );
      const own = await tokens.issue({ ...input, audience: ISSUER });
      await tokens.verify(own.token);

      const seen: AccessTokenClaims[] = [];
      tokens.setRevocationCheck((claims) => {
        seen.push(claims);
        return claims.ver < 4;
      });
      assert.equal(await reasonOf(tokens.verify(token, { audience: ML_API })), 'revoked');
      assert.equal(seen[0]?.sub, 'user-42');
      await tokens.verify((await tokens.issue({ ...input, tokenVersion: 4 })).token, { audience: ML_API });
      tokens.setRevocationCheck(async () => true);
      assert.equal(await reasonOf(tokens.verify(token, { audience: ML_API })), 'revoked');
      tokens.setRevocationCheck(() => {
        throw new Error('state store down');
      });
      assert.equal(await reasonOf(tokens.verify(token, { audience: ML_API })), 'revocation_check_failed');
      tokens.setRevocationCheck(undefined);

      t = T0 + 900_000 + 30_000;
      assert.equal(await reasonOf(tokens.verify(token, { audience: ML_API })), 'expired');
      t = T0 + 900_000 + 29_000;
      await tokens.verify(token, { audience: ML_API });
      t = T0;
    });

    it('the ID-token key cannot sign access tokens', async () => {
      t = T0;
      const idSigner = await keys.signerFor('RS256', 'id_token');
      const forged = idSigner.sign({ ...validClaims({ ...kitBase(), nowSeconds: T0 / 1000 }), aud: ML_API });
      const tokens = service({ algorithms: ['RS256'] });
      assert.equal(await reasonOf(tokens.verify(forged, { audience: ML_API })), 'wrong_key_use');
    });

    it('refuses every hand-crafted bad token with InvalidTokenError and no query storm', async () => {
      t = T0;
      const tokens = service();
      const kid = (await keys.currentSigner()).kid;
      const { rows } = await db.query<{ private_key_enc: Uint8Array }>(
        'SELECT private_key_enc FROM signing_keys WHERE kid = $1',
        [kid],
      );
      const der = open(
        deriveKey(SECRET, 'gatehouse signing keys v1'),
        rows[0]?.private_key_enc as Uint8Array,
        kid,
      );
      const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
      const kit = {
        ...kitBase(),
        kid,
        privateKey,
        publicKey: keys.cachedVerificationKey(kid)?.key as never,
        nowSeconds: T0 / 1000,
      };
      // Sanity: the kit's valid token is accepted, so each refusal below is down to its one defect.
      await tokens.verify(signedToken({ alg: 'ES256', typ: 'at+jwt', kid }, validClaims(kit), privateKey), {
        audience: ML_API,
      });

      const reloadsBefore = keys.reloads;
      for (let round = 0; round < 20; round++) {
        for (const crafted of craftedTokens(kit)) {
          const reason = await reasonOf(tokens.verify(crafted.token as string, { audience: ML_API }));
          assert.ok(
            crafted.reasons.includes(reason),
            `${crafted.name}: got ${reason}, expected ${crafted.reasons}`,
          );
        }
      }
      assert.ok(keys.reloads - reloadsBefore <= 1, `${keys.reloads - reloadsBefore} reloads for 20 rounds`);
    });
  });
}

function kitBase() {
  return { issuer: ISSUER, audience: ML_API };
}
