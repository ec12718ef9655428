import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { loadConfig } from '../config/config.ts';
import { DependencyUnavailableError } from '../errors.ts';
import { PROBLEM_BASE } from '../http/problem.ts';
import { createHttpServer, type HttpServer } from '../http/server.ts';
import { createLogger } from '../logging/logger.ts';
import type { AuthenticationResult, Principal } from './principal.ts';
import { createAuthorization } from './require-permission.ts';

const USER_ID = '00000000-0000-4000-8000-000000000001';

function principal(permissions: string[], via: Principal['via'] = 'access_token'): Principal {
  return {
    userId: USER_ID,
    via,
    sessionId: 'sid',
    tokenId: via === 'access_token' ? 'jti' : null,
    clientId: null,
    roles: ['user'],
    permissions,
    expiresAt: via === 'access_token' ? 2_000_000_000 : null,
  };
}

/** The fake authenticator: the bearer token names the outcome. */
const TOKENS: Record<string, AuthenticationResult> = {
  expired: { outcome: 'invalid', reason: 'token_expired_secret_reason' },
  revoked: { outcome: 'invalid', reason: 'token_revoked_secret_reason' },
  reader: { outcome: 'authenticated', principal: principal(['models:read']) },
  llama: { outcome: 'authenticated', principal: principal(['models:predict:llama-3-8b']) },
  root: { outcome: 'authenticated', principal: principal(['*']) },
  'session-reader': { outcome: 'authenticated', principal: principal(['models:read'], 'session') },
};

function assertProblem(
  response: { statusCode: number; headers: Record<string, unknown>; body: string },
  status: number,
  kind: string,
) {
  assert.equal(response.statusCode, status, response.body);
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
  const body = JSON.parse(response.body);
  assert.equal(body.type, PROBLEM_BASE + kind);
  assert.equal(body.status, status);
  assert.ok(!response.body.includes('secret_reason'), 'the refusal reason never reaches the caller');
  return body;
}

describe('createAuthorization: the 401/403 discipline', () => {
  let server: HttpServer;
  let calls = 0;

  before(async () => {
    server = await createHttpServer(loadConfig({ GATEHOUSE_LOG_LEVEL: 'silent' }), createLogger('silent'));
    const authz = createAuthorization(async (request: FastifyRequest) => {
      calls++;
      const header = request.headers.authorization;
      if (header === undefined) return { outcome: 'missing' };
      if (header === 'Bearer broken-store') throw new DependencyUnavailableError('database');
      const result = TOKENS[header.replace(/^Bearer /, '')];
      return result ?? { outcome: 'invalid', reason: 'malformed_secret_reason' };
    });
    server.get('/read', { preHandler: authz.requirePermission('models:read') }, async (request) => ({
      user: request.principal?.userId,
    }));
    server.get<{ Params: { model: string } }>(
      '/models/:model/predict',
      {
        preHandler: authz.requirePermission(
          (request) => `models:predict:${(request.params as { model: string }).model}`,
        ),
      },
      async () => ({ ok: true }),
    );
    server.get(
      '/me',
      { preHandler: [authz.requireAuthentication(), authz.requirePermission('models:read')] },
      async (request) => ({ via: request.principal?.via }),
    );
    server.get('/authorize', async (request) => {
      const found = await authz.authorize(request, 'models:train');
      return { user: found.userId };
    });
    server.post(
      '/strict',
      {
        onRequest: authz.requirePermission('models:read'),
        schema: { body: Type.Object({ n: Type.Integer() }, { additionalProperties: false }) },
      },
      async () => ({ ok: true }),
    );
  });
  after(() => server.close());

  const get = (url: string, authorization?: string) =>
    server.inject({ method: 'GET', url, headers: authorization ? { authorization } : {} });

  it('no credentials: 401 with a bare Bearer challenge (no error code)', async () => {
    const response = await get('/read');
    assertProblem(response, 401, 'unauthorized');
    assert.equal(response.headers['www-authenticate'], 'Bearer realm="gatehouse"');
  });

  it('refused credentials: 401 error="invalid_token", whatever the reason', async () => {
    for (const token of ['expired', 'revoked', 'garbage']) {
      const response = await get('/read', `Bearer ${token}`);
      const body = assertProblem(response, 401, 'unauthorized');
      assert.equal(response.headers['www-authenticate'], 'Bearer realm="gatehouse", error="invalid_token"');
      assert.equal(body.detail, 'The credentials are not valid');
    }
  });

  it('authenticated without the permission: 403 error="insufficient_scope" naming the scope', async () => {
    const response = await get('/authorize', 'Bearer reader');
    const body = assertProblem(response, 403, 'forbidden');
    assert.equal(
      response.headers['www-authenticate'],
      'Bearer realm="gatehouse", error="insufficient_scope", scope="models:train"',
    );
    assert.match(body.detail, /models:train/);
  });

  it('session-cookie principals get 403 without a Bearer challenge', async () => {
    const response = await get('/authorize', 'Bearer session-reader');
    assertProblem(response, 403, 'forbidden');
    assert.equal(response.headers['www-authenticate'], undefined);
  });

  it('permitted: 200 with request.principal set', async () => {
    const response = await get('/read', 'Bearer reader');
    assert.equal(response.statusCode, 200, response.body);
    assert.deepEqual(response.json(), { user: USER_ID });
    assert.equal(response.headers['www-authenticate'], undefined);
    assert.equal((await get('/read', 'Bearer root')).statusCode, 200);
    assert.equal((await get('/read', 'Bearer session-reader')).statusCode, 200);
    assert.deepEqual((await get('/authorize', 'Bearer root')).json(), { user: USER_ID });
  });

  it('permissions computed from the request: per-model access', async () => {
    assert.equal((await get('/models/llama-3-8b/predict', 'Bearer llama')).statusCode, 200);
    assert.equal((await get('/models/llama-3-8b/predict', 'Bearer root')).statusCode, 200);
    const denied = await get('/models/mistral-7b/predict', 'Bearer llama');
    assertProblem(denied, 403, 'forbidden');
    assert.equal(
      denied.headers['www-authenticate'],
      'Bearer realm="gatehouse", error="insufficient_scope", scope="models:predict:mistral-7b"',
    );
    assertProblem(await get('/models/llama-3-8b/predict'), 401, 'unauthorized');
  });

  it('a computed permission that is not valid is granted to nobody and not echoed', async () => {
    const response = await get(`/models/${encodeURIComponent('a"b*')}/predict`, 'Bearer root');
    assertProblem(response, 403, 'forbidden');
    assert.equal(
      response.headers['www-authenticate'],
      'Bearer realm="gatehouse", error="insufficient_scope"',
    );
    assert.ok(!response.body.includes('a\\"b*'));
  });

  it('requireAuthentication: 401 discipline, and authenticates once per request', async () => {
    assertProblem(await get('/me'), 401, 'unauthorized');
    const refused = await get('/me', 'Bearer expired');
    assert.equal(refused.headers['www-authenticate'], 'Bearer realm="gatehouse", error="invalid_token"');
    calls = 0;
    const response = await get('/me', 'Bearer session-reader');
    assert.deepEqual(response.json(), { via: 'session' });
    assert.equal(calls, 1);
  });

  it('used as onRequest, authorization comes before body validation', async () => {
    const post = (payload: unknown, authorization?: string) =>
      server.inject({
        method: 'POST',
        url: '/strict',
        payload: payload as object,
        headers: authorization ? { authorization } : {},
      });
    assertProblem(await post({ bogus: true }), 401, 'unauthorized');
    assertProblem(await post({ bogus: true }, 'Bearer llama'), 403, 'forbidden');
    assertProblem(await post({ bogus: true }, 'Bearer reader'), 400, 'validation-error');
    assert.equal((await post({ n: 1 }, 'Bearer reader')).statusCode, 200);
  });

  it('an authenticator failure is not turned into a 401', async () => {
    const response = await get('/read', 'Bearer broken-store');
    assertProblem(response, 503, 'dependency-unavailable');
    assert.equal(response.headers['www-authenticate'], undefined);
  });

  it('refuses an invalid static permission at set-up', () => {
    const authz = createAuthorization(async () => ({ outcome: 'missing' }));
    for (const bad of ['*:read', 'models', 'Models:read', 'models:*:x', '']) {
      assert.throws(() => authz.requirePermission(bad), TypeError, bad);
    }
  });
});
