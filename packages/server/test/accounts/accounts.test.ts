import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PROBLEM_BASE } from '../../src/http/problem.ts';
import {
  bearer,
  call,
  client,
  createUser,
  lastMail,
  login,
  OTHER_PASSWORD,
  STRONG_PASSWORD,
  settle,
  uniqueEmail,
} from '../support/accounts.ts';
import { backends, startTestGatehouse, type TestGatehouse } from '../support/backends.ts';

for (const backend of backends()) {
  describe(`accounts on ${backend.name}`, () => {
    let gh: TestGatehouse;
    before(async () => {
      gh = await startTestGatehouse(backend, {
        GATEHOUSE_LOGIN_MAX_FAILURES: '4',
        GATEHOUSE_LOGIN_LOCK_SECONDS: '3',
      });
    });
    after(() => gh.destroy());

    describe('registration', () => {
      it('answers identically for a new and an existing email; each owner gets the right mail', async () => {
        const email = uniqueEmail('reg');
        const first = await call(gh, client('198.51.100.1'), 'POST', '/v1/auth/register', {
          email,
          password: STRONG_PASSWORD,
          name: 'Ada',
        });
        const second = await call(gh, client('198.51.100.2'), 'POST', '/v1/auth/register', {
          email: email.toUpperCase(),
          password: OTHER_PASSWORD,
        });
        assert.equal(first.statusCode, 202);
        assert.equal(second.statusCode, 202);
        assert.equal(first.body, second.body);
        assert.deepEqual(Object.keys(first.headers).sort(), Object.keys(second.headers).sort());
        await settle(gh);
        const { rows } = await gh.db.query<{ subject: string }>(
          'SELECT subject FROM mail_outbox WHERE to_address = $1 ORDER BY created_at',
          [email],
        );
        assert.equal(rows.length, 2);
        assert.match(rows[0]?.subject ?? '', /confirm your email/i);
        assert.match(rows[1]?.subject ?? '', /attempt/i);
        const users = await gh.db.query('SELECT id FROM users WHERE email = $1', [email]);
        assert.equal(users.rows.length, 1, 'one account, case-insensitively');
      });

      it('grants the default user role to new accounts', async () => {
        const email = uniqueEmail('role');
        await call(gh, client('198.51.100.3'), 'POST', '/v1/auth/register', {
          email,
          password: STRONG_PASSWORD,
        });
        const { rows } = await gh.db.query<{ id: string }>('SELECT id FROM users WHERE email = $1', [email]);
        const authz = await gh.services.authz.getUserAuthz(rows[0]?.id as string);
        assert.deepEqual(authz.roles, ['user']);
      });

      it('refuses weak, common and personal passwords with field errors, and bad emails', async () => {
        const c = client('198.51.100.4');
        const short = await call(gh, c, 'POST', '/v1/auth/register', {
          email: uniqueEmail(),
          password: 'short pass',
        });
        assert.equal(short.statusCode, 400);
        assert.equal(short.json().type, `${PROBLEM_BASE}validation-error`);
        assert.equal(short.json().errors[0].pointer, '/password');
        const email = uniqueEmail('personal');
        const personal = await call(gh, c, 'POST', '/v1/auth/register', {
          email,
          password: `${email.split('@')[0]}-and-more`,
        });
        assert.equal(personal.statusCode, 400);
        const badEmail = await call(gh, c, 'POST', '/v1/auth/register', {
          email: 'not-an-email',
          password: STRONG_PASSWORD,
        });
        assert.equal(badEmail.statusCode, 400);
        assert.equal(badEmail.json().errors[0].pointer, '/email');
      });

      it('rejects overlong inputs before hashing', async () => {
        const c = client('198.51.100.5');
        const longEmail = await call(gh, c, 'POST', '/v1/auth/register', {
          email: `${'a'.repeat(10_000)}@example.com`,
          password: STRONG_PASSWORD,
        });
        assert.equal(longEmail.statusCode, 400);
        const megabyte = await call(gh, c, 'POST', '/v1/auth/login', {
          email: uniqueEmail(),
          password: 'p'.repeat(1024 * 1024),
        });
        assert.equal(megabyte.statusCode, 413);
        const tooLong = await call(gh, c, 'POST', '/v1/auth/register', {
          email: uniqueEmail(),
          password: 'p'.repeat(5000),
        });
        assert.equal(tooLong.statusCode, 400);
      });
    });

    describe('login', () => {
      it('answers with a session cookie and a token response', async () => {
        const user = await createUser(gh);
        const c = client();
        const response = await call(gh, c, 'POST', '/v1/auth/login', {
          email: user.email,
          password: user.password,
        });
        assert.equal(response.statusCode, 200, response.body);
        const body = response.json();
        assert.equal(body.token_type, 'Bearer');
        assert.equal(body.expires_in, 900);
        assert.match(body.refresh_token, /^ghr_/);
        assert.equal(body.access_token.split('.').length, 3);
        const setCookie = String(response.headers['set-cookie']);
        assert.match(setCookie, /^gh_session=[A-Za-z0-9_-]{43};/);
        assert.match(setCookie, /HttpOnly/);
        assert.match(setCookie, /SameSite=Lax/);
        assert.match(setCookie, /Path=\//);
        assert.doesNotMatch(setCookie, /Secure/, 'plain http: no Secure');
        const me = await call(gh, c, 'GET', '/v1/me');
        assert.equal(me.statusCode, 200);
        assert.equal(me.json().email, user.email);
        const viaToken = await call(gh, client(), 'GET', '/v1/me', undefined, bearer(body.access_token));
        assert.equal(viaToken.statusCode, 200);
        assert.deepEqual(viaToken.json().roles, ['user'], 'new accounts hold the default role');
      });

      it('gives one generic answer for unknown email, wrong password and disabled account, taking the dummy-hash path for unknown users', async () => {
        const user = await createUser(gh);
        const disabled = await createUser(gh);
        await gh.services.identity.setStatus(disabled.id, 'disabled', user.id, {
          ip: null,
          userAgent: null,
          requestId: null,
        });
        const hasher = gh.services.hasher;
        let dummyCalls = 0;
        const original = hasher.verifyDummy.bind(hasher);
        hasher.verifyDummy = async (password: string) => {
          dummyCalls += 1;
          return original(password);
        };
        try {
          const unknown = await call(gh, client('192.0.2.1'), 'POST', '/v1/auth/login', {
            email: uniqueEmail('nobody'),
            password: STRONG_PASSWORD,
          });
          assert.equal(dummyCalls, 1);
          const wrong = await call(gh, client('192.0.2.2'), 'POST', '/v1/auth/login', {
            email: user.email,
            password: OTHER_PASSWORD,
          });
          const off = await call(gh, client('192.0.2.3'), 'POST', '/v1/auth/login', {
            email: disabled.email,
            password: disabled.password,
          });
          assert.equal(dummyCalls, 1, 'real users are verified against their own hash');
          const strip = (r: typeof unknown) => {
            const { request_id: _ignored, ...rest } = r.json();
            return rest;
          };
          for (const response of [unknown, wrong, off]) assert.equal(response.statusCode, 401);
          assert.deepEqual(strip(unknown), strip(wrong));
          assert.deepEqual(strip(wrong), strip(off));
        } finally {
          hasher.verifyDummy = original;
        }
      });

      it('delays, then locks an account+IP; other IPs still get in; the lock ends; success resets the count', async () => {
        const user = await createUser(gh);
        const attacker = client('192.0.2.50');
        const fail = () =>
          call(gh, attacker, 'POST', '/v1/auth/login', { email: user.email, password: OTHER_PASSWORD });
        for (let i = 0; i < 3; i++) assert.equal((await fail()).statusCode, 401);
        const delayed = await fail();
        assert.equal(delayed.statusCode, 429, 'growing delay after the third failure');
        assert.ok(Number(delayed.headers['retry-after']) >= 1);
        await new Promise((r) => setTimeout(r, 1100));
        assert.equal((await fail()).statusCode, 401);
        const locked = await call(gh, attacker, 'POST', '/v1/auth/login', {
          email: user.email,
          password: user.password,
        });
        assert.equal(locked.statusCode, 429, 'locked: even the right password waits');
        assert.equal(locked.json().type, `${PROBLEM_BASE}rate-limited`);
        // The real user, from their own IP, is not locked out by the attacker.
        await login(gh, client('192.0.2.99'), user.email, user.password);
        await new Promise((r) => setTimeout(r, 3200));
        await login(gh, attacker, user.email, user.password);
        // A success reset the account+IP counter: three more failures are needed before a delay.
        for (let i = 0; i < 3; i++) assert.equal((await fail()).statusCode, 401);
        await settle(gh);
        const { rows } = await gh.db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM audit_events WHERE type = 'login.locked' AND subject_id IS NULL`,
        );
        assert.ok((rows[0]?.n ?? 0) >= 1, 'lockouts are audited');
      });

      it('refuses unverified accounts when verification is required, with the same generic error', async () => {
        const strict = await startTestGatehouse(backend, { GATEHOUSE_REQUIRE_EMAIL_VERIFICATION: 'true' });
        try {
          const email = uniqueEmail('unverified');
          await call(strict, client('192.0.2.60'), 'POST', '/v1/auth/register', {
            email,
            password: STRONG_PASSWORD,
          });
          const refused = await call(strict, client('192.0.2.60'), 'POST', '/v1/auth/login', {
            email,
            password: STRONG_PASSWORD,
          });
          assert.equal(refused.statusCode, 401);
          assert.equal(refused.json().detail, 'Invalid email or password');
          await settle(strict);
          const { token } = await lastMail(strict, email);
          assert.equal(
            (await call(strict, client('192.0.2.60'), 'POST', '/v1/auth/verify-email', { token })).statusCode,
            204,
          );
          await login(strict, client('192.0.2.60'), email, STRONG_PASSWORD);
        } finally {
          await strict.destroy();
        }
      });
    });

    describe('email verification and password reset', () => {
      it('verifies once; reused, tampered and expired links get one generic error', async () => {
        const email = uniqueEmail('verify');
        const c = client('198.51.100.20');
        await call(gh, c, 'POST', '/v1/auth/register', { email, password: STRONG_PASSWORD });
        await settle(gh);
        const { token } = await lastMail(gh, email);
        assert.ok(token);
        assert.equal((await call(gh, c, 'POST', '/v1/auth/verify-email', { token })).statusCode, 204);
        const { rows } = await gh.db.query<{ email_verified: boolean }>(
          'SELECT email_verified FROM users WHERE email = $1',
          [email],
        );
        assert.equal(rows[0]?.email_verified, true);
        const reused = await call(gh, c, 'POST', '/v1/auth/verify-email', { token });
        const tampered = await call(gh, c, 'POST', '/v1/auth/verify-email', {
          token: `${token.slice(0, -2)}xx`,
        });
        assert.equal(reused.statusCode, 400);
        assert.equal(reused.json().detail, tampered.json().detail);
        // Expired: resend a link (the account is verified now, so use a fresh one) and age it.
        const other = uniqueEmail('verify2');
        await call(gh, c, 'POST', '/v1/auth/register', { email: other, password: STRONG_PASSWORD });
        await settle(gh);
        const fresh = (await lastMail(gh, other)).token as string;
        await gh.db.query(
          `UPDATE email_tokens SET expires_at = now() - interval '1 second' WHERE consumed_at IS NULL`,
        );
        const expired = await call(gh, c, 'POST', '/v1/auth/verify-email', { token: fresh });
        assert.equal(expired.statusCode, 400);
        assert.equal(expired.json().detail, reused.json().detail);
      });

      it('reset: identical answers, a working link that ends every session, single use, and nothing half-written on failure', async () => {
        const user = await createUser(gh);
        const c = client('198.51.100.30');
        const browser = client('198.51.100.31');
        const tokens = await login(gh, browser, user.email, user.password);
        const known = await call(gh, c, 'POST', '/v1/auth/password-reset/request', { email: user.email });
        const unknown = await call(gh, c, 'POST', '/v1/auth/password-reset/request', {
          email: uniqueEmail('ghost'),
        });
        assert.equal(known.statusCode, 202);
        assert.equal(known.body, unknown.body);
        await settle(gh);
        const { token } = await lastMail(gh, user.email);
        assert.ok(token);

        // A failing confirm (weak password) leaves the old password working and the link unused.
        const weak = await call(gh, c, 'POST', '/v1/auth/password-reset/confirm', {
          token,
          newPassword: 'weak',
        });
        assert.equal(weak.statusCode, 400);
        await login(gh, client('198.51.100.32'), user.email, user.password);

        assert.equal(
          (
            await call(gh, c, 'POST', '/v1/auth/password-reset/confirm', {
              token,
              newPassword: OTHER_PASSWORD,
            })
          ).statusCode,
          204,
        );
        assert.equal((await call(gh, browser, 'GET', '/v1/me')).statusCode, 401, 'sessions ended');
        assert.equal(
          (await call(gh, client(), 'GET', '/v1/me', undefined, bearer(tokens.access_token))).statusCode,
          401,
          'tokens ended',
        );
        const refresh = await call(gh, client(), 'POST', '/v1/auth/refresh', {
          refresh_token: tokens.refresh_token,
        });
        assert.equal(refresh.statusCode, 400, 'refresh families ended');
        assert.equal(
          (await call(gh, c, 'POST', '/v1/auth/login', { email: user.email, password: user.password }))
            .statusCode,
          401,
        );
        await login(gh, client('198.51.100.33'), user.email, OTHER_PASSWORD);
        const again = await call(gh, c, 'POST', '/v1/auth/password-reset/confirm', {
          token,
          newPassword: STRONG_PASSWORD,
        });
        assert.equal(again.statusCode, 400, 'single use');
      });
    });

    describe('sessions', () => {
      it('lists, ends one, ends the others; password change ends every other session', async () => {
        const user = await createUser(gh);
        const a = client('203.0.113.1');
        const b = client('203.0.113.2');
        const d = client('203.0.113.3');
        await login(gh, a, user.email, user.password);
        await login(gh, b, user.email, user.password);
        await login(gh, d, user.email, user.password);
        const listed = (await call(gh, a, 'GET', '/v1/me/sessions')).json().items as {
          id: string;
          current: boolean;
          ip: string;
        }[];
        assert.equal(listed.length, 3);
        assert.equal(listed.filter((s) => s.current).length, 1);
        const bSession = listed.find((s) => s.ip === '203.0.113.2') as { id: string };
        assert.equal((await call(gh, a, 'DELETE', `/v1/me/sessions/${bSession.id}`)).statusCode, 204);
        assert.equal((await call(gh, b, 'GET', '/v1/me')).statusCode, 401);
        assert.equal((await call(gh, a, 'DELETE', `/v1/me/sessions/${bSession.id}`)).statusCode, 404);
        const change = await call(gh, a, 'POST', '/v1/me/password', {
          currentPassword: user.password,
          newPassword: OTHER_PASSWORD,
        });
        assert.equal(change.statusCode, 204, change.body);
        assert.equal((await call(gh, d, 'GET', '/v1/me')).statusCode, 401, 'other session ended');
        assert.equal((await call(gh, a, 'GET', '/v1/me')).statusCode, 200, 'the current session stays');
        const wrongCurrent = await call(gh, a, 'POST', '/v1/me/password', {
          currentPassword: user.password,
          newPassword: STRONG_PASSWORD,
        });
        assert.equal(wrongCurrent.statusCode, 403);
        await login(gh, b, user.email, OTHER_PASSWORD);
        assert.deepEqual((await call(gh, a, 'POST', '/v1/me/sessions/revoke-others')).json(), { revoked: 1 });
        assert.equal((await call(gh, b, 'GET', '/v1/me')).statusCode, 401);
      });

      it('a new session on every login (the old cookie dies), and logout really ends it', async () => {
        const user = await createUser(gh);
        const c = client();
        await login(gh, c, user.email, user.password);
        const firstCookie = c.cookies.get('gh_session') as string;
        await login(gh, c, user.email, user.password);
        assert.notEqual(c.cookies.get('gh_session'), firstCookie);
        const stale = client();
        stale.cookies.set('gh_session', firstCookie);
        assert.equal((await call(gh, stale, 'GET', '/v1/me')).statusCode, 401);
        const kept = new Map(c.cookies);
        const logout = await call(gh, c, 'POST', '/v1/auth/logout');
        assert.equal(logout.statusCode, 204);
        // The browser drops the cookies too: same name and path, empty, expired, same flags.
        const cleared = new Map(logout.cookies.map((set) => [set.name, set]));
        for (const [name, path] of [
          ['gh_session', '/'],
          ['gh_refresh', '/v1/auth/refresh'],
        ] as const) {
          const set = cleared.get(name);
          assert.equal(set?.value, '', name);
          assert.equal(set?.path, path, name);
          assert.ok(set?.expires && set.expires.getTime() < Date.now(), name);
          assert.equal(set?.httpOnly, true, name);
        }
        assert.equal(c.cookies.size, 0);
        const replay = client();
        replay.cookies = kept;
        assert.equal((await call(gh, replay, 'GET', '/v1/me')).statusCode, 401);
      });

      it('idle and absolute timeouts end sessions', async () => {
        const user = await createUser(gh);
        const idle = client();
        const absolute = client();
        await login(gh, idle, user.email, user.password);
        await login(gh, absolute, user.email, user.password);
        await gh.db.query(
          `UPDATE sessions SET idle_expires_at = now() - interval '1 second' WHERE user_id = $1 AND ip = $2`,
          [user.id, idle.ip],
        );
        assert.equal((await call(gh, idle, 'GET', '/v1/me')).statusCode, 401);
      });
    });

    describe('CSRF', () => {
      it('refuses cross-site writes with the session cookie; Bearer requests are exempt', async () => {
        const user = await createUser(gh);
        const c = client();
        const tokens = await login(gh, c, user.email, user.password);
        const evil = await call(gh, c, 'POST', '/v1/me/sessions/revoke-others', undefined, {
          origin: 'https://evil.example',
        });
        assert.equal(evil.statusCode, 403);
        assert.match(String(evil.headers['content-type']), /problem\+json/);
        const noOrigin = await gh.server.inject({
          method: 'POST',
          url: '/v1/me/sessions/revoke-others',
          headers: { cookie: `gh_session=${c.cookies.get('gh_session')}` },
        });
        assert.equal(noOrigin.statusCode, 403);
        const crossFetch = await gh.server.inject({
          method: 'POST',
          url: '/v1/me/sessions/revoke-others',
          headers: { cookie: `gh_session=${c.cookies.get('gh_session')}`, 'sec-fetch-site': 'cross-site' },
        });
        assert.equal(crossFetch.statusCode, 403);
        const sameOrigin = await call(gh, c, 'POST', '/v1/me/sessions/revoke-others');
        assert.equal(sameOrigin.statusCode, 200);
        const viaBearer = await gh.server.inject({
          method: 'POST',
          url: '/v1/me/sessions/revoke-others',
          headers: { ...bearer(tokens.access_token), origin: 'https://evil.example' },
        });
        assert.equal(viaBearer.statusCode, 200);
      });
    });

    describe('admin', () => {
      /** An admin and a plain user, each logged in with their own browser-like client. */
      const adminAndPlainUser = async () => {
        const admin = await createUser(gh, { roles: ['admin'] });
        const plain = await createUser(gh);
        const adminClient = client();
        await login(gh, adminClient, admin.email, admin.password);
        const plainClient = client();
        await login(gh, plainClient, plain.email, plain.password);
        return { admin, plain, adminClient, plainClient };
      };

      it('needs users:manage; searches, pages, disables (ending sessions at once) and sets roles', async () => {
        const { plain, adminClient, plainClient } = await adminAndPlainUser();
        assert.equal((await call(gh, plainClient, 'GET', '/v1/admin/users')).statusCode, 403);
        assert.equal((await call(gh, client(), 'GET', '/v1/admin/users')).statusCode, 401);

        const prefix = `page-${Date.now().toString(36)}`;
        for (let i = 0; i < 5; i++) await createUser(gh, { email: `${prefix}-${i}@example.com` });
        const seen: string[] = [];
        let cursor: string | null = null;
        do {
          const url: string = `/v1/admin/users?q=${prefix}&limit=2${cursor ? `&cursor=${cursor}` : ''}`;
          const page = (await call(gh, adminClient, 'GET', url)).json();
          seen.push(...page.items.map((u: { email: string }) => u.email));
          cursor = page.next_cursor;
        } while (cursor);
        assert.deepEqual(
          seen,
          [0, 1, 2, 3, 4].map((i) => `${prefix}-${i}@example.com`),
        );

        const patched = await call(gh, adminClient, 'PATCH', `/v1/admin/users/${plain.id}`, {
          roles: ['premium'],
          status: 'disabled',
        });
        assert.equal(patched.statusCode, 200, patched.body);
        assert.deepEqual(patched.json().roles, ['premium']);
        assert.equal(patched.json().status, 'disabled');
        assert.equal(
          (await call(gh, plainClient, 'GET', '/v1/me')).statusCode,
          401,
          'disabled: sessions end at once',
        );
        assert.equal(
          (
            await call(gh, client(), 'POST', '/v1/auth/login', {
              email: plain.email,
              password: plain.password,
            })
          ).statusCode,
          401,
        );
        const enabled = await call(gh, adminClient, 'PATCH', `/v1/admin/users/${plain.id}`, {
          status: 'active',
        });
        assert.equal(enabled.json().status, 'active');
        await login(gh, plainClient, plain.email, plain.password);
        assert.deepEqual(
          (await call(gh, adminClient, 'POST', `/v1/admin/users/${plain.id}/revoke-sessions`)).json(),
          { revoked: 1 },
        );
        assert.equal((await call(gh, plainClient, 'GET', '/v1/me')).statusCode, 401);
        await settle(gh);
        const audit = await call(gh, adminClient, 'GET', `/v1/admin/audit?user_id=${plain.id}`);
        assert.equal(audit.statusCode, 200);
        const types = new Set(audit.json().items.map((e: { type: string }) => e.type));
        for (const type of [
          'user.disabled',
          'user.enabled',
          'role.assigned',
          'session.revoked',
          'login.succeeded',
        ])
          assert.ok(types.has(type), type);
      });

      it('GET /v1/me with a cookie is served from caches, yet shows role, permission and profile changes at once', async () => {
        const { admin, plain, adminClient, plainClient } = await adminAndPlainUser();
        const me = async () => {
          const response = await call(gh, plainClient, 'GET', '/v1/me');
          assert.equal(response.statusCode, 200, response.body);
          return response.json() as { name: string | null; roles: string[]; permissions: string[] };
        };
        assert.deepEqual((await me()).roles, ['user']);
        assert.deepEqual((await me()).roles, ['user'], 'served twice (the second from the caches)');

        const role = `cache-probe-${Date.now().toString(36)}`;
        await gh.services.authz.createRole({ name: role, permissions: ['models:read'] }, admin.id);
        await gh.services.authz.assignRole(plain.id, role, admin.id);
        assert.deepEqual((await me()).roles, [role, 'user'].sort(), 'an added role shows at once');
        await gh.services.authz.updateRole(role, { permissions: ['models:read', 'probe:run'] }, admin.id);
        assert.ok((await me()).permissions.includes('probe:run'), 'a permission added to a held role');
        await gh.services.authz.updateRole(role, { permissions: ['models:read'] }, admin.id);
        assert.ok(!(await me()).permissions.includes('probe:run'), 'a removed permission goes at once');
        await gh.services.authz.removeRole(plain.id, role, admin.id);
        assert.deepEqual((await me()).roles, ['user'], 'a removed role goes at once');

        const renamed = await call(gh, adminClient, 'PATCH', `/v1/admin/users/${plain.id}`, { name: 'Ada' });
        assert.equal(renamed.statusCode, 200, renamed.body);
        assert.equal((await me()).name, 'Ada', 'a profile change shows at once');
        // The edit is an audited admin action; the row says what changed, not the new name.
        await call(gh, adminClient, 'PATCH', `/v1/admin/users/${plain.id}`, { name: 'Ada' });
        await settle(gh);
        const { rows } = await gh.db.query<{ actor_id: string; details: unknown }>(
          "SELECT actor_id, details FROM audit_events WHERE subject_id = $1 AND type = 'user.updated'",
          [plain.id],
        );
        assert.equal(rows.length, 1, 'one event for the rename, none for the no-op repeat');
        assert.equal(rows[0]?.actor_id, admin.id);
        assert.deepEqual(rows[0]?.details, { name_changed: true });
      });
    });

    describe('audit trail', () => {
      it('records every account event without a password, token or secret in any row', async () => {
        const email = uniqueEmail('audit');
        const c = client('198.51.100.77');
        await call(gh, c, 'POST', '/v1/auth/register', { email, password: STRONG_PASSWORD });
        await call(gh, c, 'POST', '/v1/auth/login', { email, password: OTHER_PASSWORD });
        const tokens = await login(gh, c, email, STRONG_PASSWORD);
        await settle(gh);
        const verifyToken = (await lastMail(gh, email)).token as string;
        await call(gh, c, 'POST', '/v1/auth/verify-email', { token: verifyToken });
        await call(gh, c, 'POST', '/v1/me/password', {
          currentPassword: STRONG_PASSWORD,
          newPassword: OTHER_PASSWORD,
        });
        await call(gh, c, 'POST', '/v1/auth/password-reset/request', { email });
        await settle(gh);
        const resetToken = (await lastMail(gh, email)).token as string;
        await call(gh, c, 'POST', '/v1/auth/password-reset/confirm', {
          token: resetToken,
          newPassword: STRONG_PASSWORD,
        });
        const again = await login(gh, c, email, STRONG_PASSWORD);
        await call(gh, c, 'POST', '/v1/auth/logout');
        await settle(gh);
        const { rows: users } = await gh.db.query<{ id: string }>('SELECT id FROM users WHERE email = $1', [
          email,
        ]);
        const { rows } = await gh.db.query<Record<string, unknown>>(
          'SELECT * FROM audit_events WHERE subject_id = $1 OR actor_id = $1 ORDER BY id',
          [users[0]?.id],
        );
        const types = rows.map((r) => r.type);
        for (const type of [
          'user.registered',
          'login.failed',
          'login.succeeded',
          'email.verified',
          'password.changed',
          'password.reset_requested',
          'password.reset',
          'logout',
          'token.issued',
        ]) {
          assert.ok(types.includes(type), `${type} in ${types.join(',')}`);
        }
        const failed = rows.find((r) => r.type === 'login.failed') as {
          details: { reason: string };
          ip: string;
          request_id: string;
        };
        assert.equal(failed.details.reason, 'wrong_password');
        assert.equal(failed.ip, '198.51.100.77');
        assert.ok(failed.request_id);
        const everything = JSON.stringify(rows);
        for (const secret of [
          STRONG_PASSWORD,
          OTHER_PASSWORD,
          tokens.access_token,
          tokens.refresh_token,
          again.refresh_token,
          verifyToken,
          resetToken,
          c.cookies.get('gh_session'),
        ]) {
          if (secret) assert.ok(!everything.includes(secret), 'no secret in audit rows');
        }
      });
    });
  });
}

describe('the pages behind the emailed links', () => {
  let gh: TestGatehouse;
  before(async () => {
    gh = await startTestGatehouse(backends()[0] as NonNullable<ReturnType<typeof backends>[0]>);
  });
  after(() => gh.destroy());

  const form = (url: string, fields: Record<string, string>) =>
    gh.server.inject({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: gh.config.publicUrl },
      payload: new URLSearchParams(fields).toString(),
    });

  it('a verification link shows a form; only the POST consumes the token', async () => {
    const email = uniqueEmail('page');
    await call(gh, client('198.51.100.90'), 'POST', '/v1/auth/register', {
      email,
      password: STRONG_PASSWORD,
    });
    await settle(gh);
    const { token } = await lastMail(gh, email);
    const shown = await gh.server.inject({ method: 'GET', url: `/account/verify-email?token=${token}` });
    assert.equal(shown.statusCode, 200);
    assert.match(String(shown.headers['content-type']), /text\/html/);
    assert.match(shown.body, /<form method="post" action="\/account\/verify-email">/);
    const { rows: before } = await gh.db.query<{ email_verified: boolean }>(
      'SELECT email_verified FROM users WHERE email = $1',
      [email],
    );
    assert.equal(before[0]?.email_verified, false, 'a GET (a mail scanner) changes nothing');
    const done = await form('/account/verify-email', { token: token as string });
    assert.equal(done.statusCode, 200);
    assert.match(done.body, /Email address confirmed/);
    const again = await form('/account/verify-email', { token: token as string });
    assert.equal(again.statusCode, 400);
    const injected = await gh.server.inject({
      method: 'GET',
      url: '/account/verify-email?token=%22%3E%3Cscript%3Ealert(1)%3C/script%3E',
    });
    assert.doesNotMatch(injected.body, /<script>/);
  });

  it('a reset link sets a new password through a plain form, with policy messages on failure', async () => {
    const user = await createUser(gh);
    await call(gh, client('198.51.100.91'), 'POST', '/v1/auth/password-reset/request', { email: user.email });
    await settle(gh);
    const { token } = await lastMail(gh, user.email);
    const weak = await form('/account/reset-password', { token: token as string, newPassword: 'short' });
    assert.equal(weak.statusCode, 400);
    assert.match(weak.body, /role="alert"/);
    const ok = await form('/account/reset-password', { token: token as string, newPassword: OTHER_PASSWORD });
    assert.equal(ok.statusCode, 200);
    assert.match(ok.body, /Password changed/);
    await login(gh, client('198.51.100.92'), user.email, OTHER_PASSWORD);
    const crossSite = await gh.server.inject({
      method: 'POST',
      url: '/account/reset-password',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example' },
      payload: 'token=x&newPassword=y',
    });
    assert.equal(crossSite.statusCode, 403);
  });
});
