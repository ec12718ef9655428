import assert from 'node:assert/strict';
import { createSign, generateKeyPairSync } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { bearer, call, client, createUser, login, OTHER_PASSWORD, settle } from '../support/accounts.ts';
import {
  backends,
  dropSchema,
  startTestGatehouse,
  type TestGatehouse,
  testEnvironment,
} from '../support/backends.ts';
import { runCli, startServerProcess } from '../support/processes.ts';

const b64 = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

for (const backend of backends()) {
  describe(`tokens over HTTP on ${backend.name}`, () => {
    let gh: TestGatehouse;
    before(async () => {
      gh = await startTestGatehouse(backend);
    });
    after(() => gh.destroy());

    it('refresh rotates every time; a replayed token revokes the family and its session', async () => {
      const user = await createUser(gh);
      const browser = client();
      const first = await login(gh, browser, user.email, user.password);
      const second = (
        await call(gh, client(), 'POST', '/v1/auth/refresh', { refresh_token: first.refresh_token })
      ).json();
      assert.match(second.refresh_token, /^ghr_/);
      assert.notEqual(second.refresh_token, first.refresh_token);
      assert.equal(
        (await call(gh, client(), 'GET', '/v1/me', undefined, bearer(second.access_token))).statusCode,
        200,
      );
      const replay = await call(gh, client(), 'POST', '/v1/auth/refresh', {
        refresh_token: first.refresh_token,
      });
      assert.equal(replay.statusCode, 400);
      assert.equal(replay.json().error, 'invalid_grant');
      const successor = await call(gh, client(), 'POST', '/v1/auth/refresh', {
        refresh_token: second.refresh_token,
      });
      assert.equal(successor.statusCode, 400, 'the whole family is revoked');
      assert.equal(
        (await call(gh, browser, 'GET', '/v1/me')).statusCode,
        401,
        'and the session it came from',
      );
      await settle(gh);
      const { rows } = await gh.db.query(
        `SELECT 1 FROM audit_events WHERE type = 'token.reuse_detected' AND subject_id = $1`,
        [user.id],
      );
      assert.equal(rows.length, 1);
      const metrics = await gh.services.metrics.registry.getSingleMetricAsString(
        'gatehouse_refresh_reuse_detected_total',
      );
      assert.match(metrics, /gatehouse_refresh_reuse_detected_total \d+/);
    });

    it('browsers get the refresh token only as a Strict, HttpOnly cookie scoped to the refresh path', async () => {
      const user = await createUser(gh);
      const browser = client();
      const response = await call(gh, browser, 'POST', '/v1/auth/login', {
        email: user.email,
        password: user.password,
        refresh_token_delivery: 'cookie',
      });
      assert.equal(response.statusCode, 200);
      assert.equal(response.json().refresh_token, undefined);
      const refreshCookie = (response.headers['set-cookie'] as string[]).find((c) =>
        c.startsWith('gh_refresh='),
      );
      assert.ok(refreshCookie);
      assert.match(refreshCookie, /HttpOnly/);
      assert.match(refreshCookie, /SameSite=Strict/);
      assert.match(refreshCookie, /Path=\/v1\/auth\/refresh/);
      const refreshed = await call(gh, browser, 'POST', '/v1/auth/refresh');
      assert.equal(refreshed.statusCode, 200, refreshed.body);
      assert.equal(refreshed.json().refresh_token, undefined);
      assert.notEqual(browser.cookies.get('gh_refresh'), refreshCookie.split(';')[0]?.split('=')[1]);
    });

    it('logout revokes the session, the family and the presented access token', async () => {
      const user = await createUser(gh);
      const tokens = await login(gh, client(), user.email, user.password);
      assert.equal(
        (await call(gh, client(), 'POST', '/v1/auth/logout', undefined, bearer(tokens.access_token)))
          .statusCode,
        204,
      );
      assert.equal(
        (await call(gh, client(), 'GET', '/v1/me', undefined, bearer(tokens.access_token))).statusCode,
        401,
      );
      assert.equal(
        (await call(gh, client(), 'POST', '/v1/auth/refresh', { refresh_token: tokens.refresh_token }))
          .statusCode,
        400,
      );
    });

    it('refuses every malformed or forged token with 401 invalid_token, never a 500', async () => {
      const user = await createUser(gh);
      const { access_token } = await login(gh, client(), user.email, user.password);
      const [h, p] = access_token.split('.') as [string, string, string];
      const header = JSON.parse(Buffer.from(h, 'base64url').toString());
      const payload = JSON.parse(Buffer.from(p, 'base64url').toString());
      const jwks = (await call(gh, client(), 'GET', '/.well-known/jwks.json')).json();
      const publicJwk = jwks.keys.find((k: { kid: string }) => k.kid === header.kid);
      const now = Math.floor(Date.now() / 1000);
      const { privateKey: attackerKey, publicKey: attackerPublic } = generateKeyPairSync('ec', {
        namedCurve: 'P-256',
      });
      const sign = (hdr: object, pl: object) => {
        const input = `${b64(hdr)}.${b64(pl)}`;
        const signature = createSign('sha256')
          .update(input)
          .sign({ key: attackerKey, dsaEncoding: 'ieee-p1363' });
        return `${input}.${signature.toString('base64url')}`;
      };
      const { createHmac, createPublicKey } = await import('node:crypto');
      const pem = createPublicKey({ key: publicJwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
      const hs256 = `${b64({ ...header, alg: 'HS256' })}.${p}`;
      const cases: Record<string, string> = {
        'not a jwt': 'garbage',
        'extra segments': `${access_token}.extra`,
        'alg none': `${b64({ alg: 'none', typ: 'at+jwt' })}.${p}.`,
        'HS256 with the public key as secret': `${hs256}.${createHmac('sha256', pem).update(hs256).digest('base64url')}`,
        'embedded jwk': sign({ ...header, jwk: attackerPublic.export({ format: 'jwk' }) }, payload),
        jku: sign({ ...header, jku: 'https://evil.example/jwks.json' }, payload),
        x5u: sign({ ...header, x5u: 'https://evil.example/cert.pem' }, payload),
        'unknown kid': sign({ ...header, kid: 'nope' }, payload),
        'injected kid': sign({ ...header, kid: "' OR 1=1 --" }, payload),
        'path kid': sign({ ...header, kid: '../../../etc/passwd' }, payload),
        'wrong signature': `${h}.${p}.${b64('x'.repeat(64))}`,
        'payload swapped': `${h}.${b64({ ...payload, sub: '00000000-0000-0000-0000-000000000000' })}.${access_token.split('.')[2]}`,
      };
      for (const [name, token] of Object.entries(cases)) {
        const response = await call(gh, client(), 'GET', '/v1/me', undefined, bearer(token));
        assert.equal(response.statusCode, 401, name);
        assert.match(String(response.headers['www-authenticate']), /error="invalid_token"/, name);
      }
      // Claims-level refusals need a validly signed token: sign with the server's own key.
      const signer = await gh.services.keys.currentSigner('ES256');
      const forge = async (hdr: { typ?: string }, pl: Record<string, unknown>) =>
        signer.sign({ ...pl }, hdr.typ);
      const claimCases: Record<string, [Record<string, unknown>, Record<string, unknown>]> = {
        'wrong typ': [{ typ: 'JWT' }, payload],
        'wrong iss': [{}, { ...payload, iss: 'https://evil.example' }],
        'wrong aud': [{}, { ...payload, aud: 'https://other.example' }],
        expired: [{}, { ...payload, iat: now - 3600, nbf: now - 3600, exp: now - 1800 }],
        'not yet valid': [{}, { ...payload, nbf: now + 3600, exp: now + 7200 }],
      };
      for (const [name, [hdr, pl]] of Object.entries(claimCases)) {
        const token = await forge(hdr, pl);
        const response = await call(gh, client(), 'GET', '/v1/me', undefined, bearer(token));
        assert.equal(response.statusCode, 401, name);
      }
      const missing = await call(gh, client(), 'GET', '/v1/me');
      assert.equal(missing.statusCode, 401);
      assert.equal(missing.headers['www-authenticate'], 'Bearer realm="gatehouse"');
    });

    it('scopes are intersected with permissions; role changes apply at the next token; losing a permission kills live tokens', async () => {
      const admin = await createUser(gh, { roles: ['admin'] });
      const user = await createUser(gh, { roles: ['user'] });
      const adminTokens = await login(gh, client(), admin.email, admin.password);
      const narrowed = await login(gh, client(), user.email, user.password, {
        scope: 'models:read inference:heavy users:manage',
      });
      assert.equal(narrowed.scope, 'models:read', 'a token never carries more than its subject holds');
      const full = await login(gh, client(), user.email, user.password);
      assert.ok(full.scope.split(' ').includes('inference:run'));
      assert.ok(!full.scope.split(' ').includes('inference:heavy'));

      // Promotion: effective at the next token (refresh), the live token keeps working.
      const promote = await call(
        gh,
        client(),
        'PUT',
        `/v1/admin/users/${user.id}/roles`,
        { roles: ['user', 'premium'] },
        bearer(adminTokens.access_token),
      );
      assert.equal(promote.statusCode, 200, promote.body);
      assert.equal(
        (await call(gh, client(), 'GET', '/v1/me', undefined, bearer(full.access_token))).statusCode,
        200,
      );
      const refreshed = (
        await call(gh, client(), 'POST', '/v1/auth/refresh', { refresh_token: full.refresh_token })
      ).json();
      assert.ok(refreshed.scope.split(' ').includes('inference:heavy'));

      // Demotion: every live token of the user stops working at once.
      const demote = await call(
        gh,
        client(),
        'DELETE',
        `/v1/admin/users/${user.id}/roles/premium`,
        undefined,
        bearer(adminTokens.access_token),
      );
      assert.equal(demote.statusCode, 204, demote.body);
      assert.equal(
        (await call(gh, client(), 'GET', '/v1/me', undefined, bearer(refreshed.access_token))).statusCode,
        401,
      );
      const after = (
        await call(gh, client(), 'POST', '/v1/auth/refresh', { refresh_token: refreshed.refresh_token })
      ).json();
      assert.ok(!after.scope.split(' ').includes('inference:heavy'));
      assert.equal(
        (await call(gh, client(), 'GET', '/v1/me', undefined, bearer(after.access_token))).statusCode,
        200,
      );
    });

    it('/metrics is not public: an admin token reads it, a user token is refused', async () => {
      const admin = await createUser(gh, { roles: ['admin'] });
      const user = await createUser(gh);
      const adminTokens = await login(gh, client(), admin.email, admin.password);
      const userTokens = await login(gh, client(), user.email, user.password);
      assert.equal((await call(gh, client(), 'GET', '/metrics')).statusCode, 401);
      assert.equal(
        (await call(gh, client(), 'GET', '/metrics', undefined, bearer(userTokens.access_token))).statusCode,
        403,
      );
      const scraped = await call(
        gh,
        client(),
        'GET',
        '/metrics',
        undefined,
        bearer(adminTokens.access_token),
      );
      assert.equal(scraped.statusCode, 200);
      assert.match(
        scraped.body,
        /gatehouse_audit_events_total\{type="login.succeeded",outcome="success"\} \d+/,
      );
    });

    it('401 vs 403: a valid token without the permission gets insufficient_scope', async () => {
      const user = await createUser(gh);
      const tokens = await login(gh, client(), user.email, user.password);
      const response = await call(
        gh,
        client(),
        'GET',
        '/v1/admin/users',
        undefined,
        bearer(tokens.access_token),
      );
      assert.equal(response.statusCode, 403);
      assert.match(String(response.headers['www-authenticate']), /error="insufficient_scope"/);
    });

    it('JWKS is cacheable and lists the signing key; key rotation keeps old tokens valid and new ones use the new kid', async () => {
      const user = await createUser(gh);
      const before = await login(gh, client(), user.email, user.password);
      const jwks = await call(gh, client(), 'GET', '/.well-known/jwks.json');
      assert.match(String(jwks.headers['cache-control']), /max-age=\d+/);
      assert.equal(jwks.headers['access-control-allow-origin'], '*');
      const oldKid = JSON.parse(
        Buffer.from(before.access_token.split('.')[0] as string, 'base64url').toString(),
      ).kid;
      assert.ok(jwks.json().keys.some((k: { kid: string }) => k.kid === oldKid));
      // Rotation: the next key is published first and signs only after the JWKS cache lifetime.
      const { kid: nextKid } = await gh.services.keys.rotate('ES256');
      const published = (await call(gh, client(), 'GET', '/.well-known/jwks.json')).json();
      assert.ok(published.keys.some((k: { kid: string }) => k.kid === nextKid));
      const stillOld = await login(gh, client(), user.email, user.password);
      assert.equal(
        JSON.parse(Buffer.from(stillOld.access_token.split('.')[0] as string, 'base64url').toString()).kid,
        oldKid,
      );
      assert.equal(
        (await call(gh, client(), 'GET', '/v1/me', undefined, bearer(before.access_token))).statusCode,
        200,
      );
    });
  });
}

describe('across two server processes sharing PostgreSQL and Redis', {
  skip: !(process.env.DATABASE_URL && process.env.REDIS_URL) && 'DATABASE_URL and REDIS_URL are not set',
}, () => {
  const env = testEnvironment(
    {
      name: 'pg',
      databaseUrl: process.env.DATABASE_URL as string,
      redisUrl: process.env.REDIS_URL as string,
    },
    { GATEHOUSE_LOG_LEVEL: 'warn' },
  );
  let servers: Awaited<ReturnType<typeof startServerProcess>>[] = [];
  const email = `race-${Date.now()}@example.com`;
  const password = OTHER_PASSWORD;

  before(async () => {
    const created = await runCli(['admin', 'create', '--email', email, '--password-stdin'], env, password);
    assert.equal(created.code, 0, created.stderr);
    servers = await Promise.all([startServerProcess(env), startServerProcess(env)]);
  });
  after(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await dropSchema(env);
  });

  const post = (base: string, path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });

  it('50 concurrent refreshes of one token on two processes: exactly one wins; a replay then revokes the family', async () => {
    const [a, b] = servers as [(typeof servers)[0], (typeof servers)[0]];
    const loginResponse = await post(a.url, '/v1/auth/login', { email, password });
    assert.equal(loginResponse.status, 200);
    const tokens = (await loginResponse.json()) as { refresh_token: string; access_token: string };
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        post(i % 2 ? a.url : b.url, '/v1/auth/refresh', { refresh_token: tokens.refresh_token }),
      ),
    );
    const winners = results.filter((r) => r.status === 200);
    assert.equal(winners.length, 1, results.map((r) => r.status).join(','));
    assert.ok(results.every((r) => r.status === 200 || r.status === 400));
    const winner = (await (winners[0] as Response).json()) as { refresh_token: string };
    // The 49 losers presented a consumed token: that is reuse, and the family is already revoked.
    const successor = await post(b.url, '/v1/auth/refresh', { refresh_token: winner.refresh_token });
    assert.equal(successor.status, 400);
  });

  it('role and profile changes made on one process reach the cached session answers of the other process within a second', async () => {
    const [a, b] = servers as [(typeof servers)[0], (typeof servers)[0]];
    const loginResponse = await post(a.url, '/v1/auth/login', { email, password });
    const cookie = String(loginResponse.headers.get('set-cookie')).split(';')[0] as string;
    const { access_token: accessToken } = (await loginResponse.json()) as { access_token: string };
    type Me = { id: string; name: string | null; roles: string[] };
    const meOnBWith = async (headers: Record<string, string>) =>
      (await (await fetch(`${b.url}/v1/me`, { headers })).json()) as Me;
    const meOnB = () => meOnBWith({ cookie });
    const me = await meOnB();
    assert.deepEqual(me.roles, ['admin', 'user'], 'now cached on b');
    // A token caller's /v1/me reports the user's current roles from the same cache.
    assert.deepEqual((await meOnBWith(bearer(accessToken))).roles, ['admin', 'user']);
    const patch = async (body: unknown) => {
      const response = await fetch(`${a.url}/v1/admin/users/${me.id}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json', cookie, origin: 'http://localhost:4000' },
        body: JSON.stringify(body),
      });
      assert.equal(response.status, 200, await response.text());
    };
    const withinASecond = async (check: (seen: Awaited<ReturnType<typeof meOnB>>) => boolean) => {
      const started = Date.now();
      while (Date.now() - started < 1000) {
        if (check(await meOnB())) return true;
        await new Promise((r) => setTimeout(r, 20));
      }
      return false;
    };
    await patch({ roles: ['admin', 'premium', 'user'] });
    assert.ok(await withinASecond((seen) => seen.roles.includes('premium')), 'an added role reaches b');
    assert.ok((await meOnBWith(bearer(accessToken))).roles.includes('premium'), 'and its token answers');
    await patch({ roles: ['admin', 'user'] });
    assert.ok(await withinASecond((seen) => !seen.roles.includes('premium')), 'a removed role reaches b');
    await patch({ name: 'Grace' });
    assert.ok(await withinASecond((seen) => seen.name === 'Grace'), 'a profile change reaches b');
  });

  it('a session revoked on one process is refused by the other at once; denylist and epoch reach the other process within a second', async () => {
    const [a, b] = servers as [(typeof servers)[0], (typeof servers)[0]];
    const loginResponse = await post(a.url, '/v1/auth/login', { email, password });
    const cookie = String(loginResponse.headers.get('set-cookie')).split(';')[0] as string;
    const tokens = (await loginResponse.json()) as { access_token: string; refresh_token: string };
    assert.equal((await fetch(`${b.url}/v1/me`, { headers: { cookie } })).status, 200, 'cached on b');
    assert.equal((await fetch(`${b.url}/v1/me`, { headers: bearer(tokens.access_token) })).status, 200);

    const logout = await post(a.url, '/v1/auth/logout', {}, { cookie, origin: 'http://localhost:4000' });
    assert.equal(logout.status, 204);
    assert.equal(
      (await fetch(`${b.url}/v1/me`, { headers: { cookie } })).status,
      401,
      'session refused on b at once',
    );

    const second = (await (await post(a.url, '/v1/auth/login', { email, password })).json()) as {
      access_token: string;
    };
    assert.equal((await fetch(`${b.url}/v1/me`, { headers: bearer(second.access_token) })).status, 200);
    const started = Date.now();
    assert.equal((await post(a.url, '/v1/auth/logout', {}, bearer(second.access_token))).status, 204);
    let refusedAfter = -1;
    while (Date.now() - started < 1000) {
      if ((await fetch(`${b.url}/v1/me`, { headers: bearer(second.access_token) })).status === 401) {
        refusedAfter = Date.now() - started;
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(refusedAfter >= 0, 'the revoked jti is refused on the other process within one second');

    // Epoch: a password change on a kills every token of the user on b.
    const third = (await (await post(a.url, '/v1/auth/login', { email, password })).json()) as {
      access_token: string;
    };
    const change = await post(
      a.url,
      '/v1/me/password',
      { currentPassword: password, newPassword: `${password} and more` },
      bearer(third.access_token),
    );
    assert.equal(change.status, 204, await change.text());
    const epochStart = Date.now();
    let epochRefused = false;
    while (Date.now() - epochStart < 1000) {
      if ((await fetch(`${b.url}/v1/me`, { headers: bearer(third.access_token) })).status === 401) {
        epochRefused = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(epochRefused, 'the epoch bump reaches the other process within one second');
  });
});
