import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Type } from 'typebox';
import { backends, startTestGatehouse, type TestGatehouse } from '../../test/support/backends.ts';
import { createLogger, flushLogs } from '../logging/logger.ts';
import { PROBLEM_BASE } from './problem.ts';

const backend = backends()[0] as NonNullable<ReturnType<typeof backends>[0]>;

/** Adds a route with a strict body schema (the foundation has no domain routes yet). */
function addProbeRoutes(gatehouse: TestGatehouse) {
  gatehouse.server.post(
    '/probe',
    {
      schema: {
        body: Type.Object(
          {
            name: Type.String({ minLength: 1, maxLength: 50 }),
            count: Type.Optional(Type.Integer({ minimum: 0 })),
          },
          { additionalProperties: false },
        ),
      },
    },
    async (request) => ({ received: request.body }),
  );
  gatehouse.server.get('/probe/crash', async () => {
    throw new Error('secret internal detail');
  });
}

function assertProblem(
  response: { headers: Record<string, unknown>; statusCode: number; body: string },
  status: number,
  kind: string,
) {
  assert.equal(response.statusCode, status, response.body);
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
  const body = JSON.parse(response.body);
  assert.equal(body.status, status);
  assert.equal(body.type, PROBLEM_BASE + kind);
  assert.equal(typeof body.title, 'string');
  assert.ok(!/\n\s+at /.test(response.body), 'no stack trace');
  return body;
}

describe('HTTP shell: bad input becomes problem+json', () => {
  let gatehouse: TestGatehouse;
  before(async () => {
    gatehouse = await startTestGatehouse(backend, { GATEHOUSE_BODY_LIMIT: '2048' });
    addProbeRoutes(gatehouse);
  });
  after(() => gatehouse.destroy());

  const post = (payload: string, contentType = 'application/json') =>
    gatehouse.server.inject({
      method: 'POST',
      url: '/probe',
      payload,
      headers: { 'content-type': contentType },
    });

  it('accepts a valid body', async () => {
    const response = await post(JSON.stringify({ name: 'a', count: 2 }));
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), { received: { name: 'a', count: 2 } });
  });

  it('unknown fields: 400 naming each field', async () => {
    const body = assertProblem(
      await post(JSON.stringify({ name: 'a', admin: true, extra: 1 })),
      400,
      'validation-error',
    );
    const pointers = body.errors.map((e: { pointer: string }) => e.pointer).sort();
    assert.deepEqual(pointers, ['/admin', '/extra']);
  });

  it('wrong types and missing fields: 400 listing every offending field, never coerced', async () => {
    const body = assertProblem(await post(JSON.stringify({ count: '5' })), 400, 'validation-error');
    const pointers = body.errors.map((e: { pointer: string }) => e.pointer).sort();
    assert.deepEqual(pointers, ['/count', '/name']);
  });

  it('malformed JSON: 400', async () => {
    assertProblem(await post('{"name": '), 400, 'malformed-request');
  });

  it('empty JSON body: 400', async () => {
    assertProblem(await post(''), 400, 'malformed-request');
  });

  it('oversized body: 413', async () => {
    assertProblem(await post(JSON.stringify({ name: 'x'.repeat(5000) })), 413, 'payload-too-large');
  });

  it('wrong content type: 415', async () => {
    assertProblem(await post('name=a', 'text/plain'), 415, 'unsupported-media-type');
    assertProblem(await post('name=a', 'application/x-www-form-urlencoded'), 415, 'unsupported-media-type');
  });

  it('unknown route: 404', async () => {
    assertProblem(await gatehouse.server.inject({ method: 'GET', url: '/nope' }), 404, 'not-found');
  });

  it('an unexpected error: 500 without its message or stack', async () => {
    const response = await gatehouse.server.inject({ method: 'GET', url: '/probe/crash' });
    const body = assertProblem(response, 500, 'internal-error');
    assert.ok(!response.body.includes('secret internal detail'));
    assert.equal(body.request_id, response.headers['x-request-id']);
  });
});

describe('HTTP shell: headers, request ids, CORS, docs', () => {
  let gatehouse: TestGatehouse;
  before(async () => {
    gatehouse = await startTestGatehouse(backend, { GATEHOUSE_CORS_ORIGINS: 'https://app.example.com' });
  });
  after(() => gatehouse.destroy());

  it('sets security headers on every response, and no HSTS over http', async () => {
    for (const url of ['/healthz', '/nope']) {
      const response = await gatehouse.server.inject({ method: 'GET', url });
      const csp = String(response.headers['content-security-policy']);
      assert.match(csp, /default-src 'none'/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.equal(response.headers['x-content-type-options'], 'nosniff');
      assert.equal(response.headers['referrer-policy'], 'no-referrer');
      assert.equal(response.headers['cross-origin-opener-policy'], 'same-origin');
      assert.equal(response.headers['x-frame-options'], 'DENY');
      assert.equal(response.headers['strict-transport-security'], undefined);
    }
  });

  it('issues a request id, or keeps a well-formed one from the caller', async () => {
    const fresh = await gatehouse.server.inject({ method: 'GET', url: '/healthz' });
    assert.match(String(fresh.headers['x-request-id']), /^[0-9a-f-]{36}$/);
    const kept = await gatehouse.server.inject({
      method: 'GET',
      url: '/healthz',
      headers: { 'x-request-id': 'trace-abc.123' },
    });
    assert.equal(kept.headers['x-request-id'], 'trace-abc.123');
    const replaced = await gatehouse.server.inject({
      method: 'GET',
      url: '/healthz',
      headers: { 'x-request-id': 'bad id\u0007<script>' },
    });
    assert.notEqual(replaced.headers['x-request-id'], 'bad id\u0007<script>');
  });

  it('answers CORS only for allow-listed origins', async () => {
    const allowed = await gatehouse.server.inject({
      method: 'OPTIONS',
      url: '/healthz',
      headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' },
    });
    assert.equal(allowed.headers['access-control-allow-origin'], 'https://app.example.com');
    assert.equal(allowed.headers['access-control-allow-credentials'], 'true');
    const denied = await gatehouse.server.inject({
      method: 'OPTIONS',
      url: '/healthz',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    assert.equal(denied.headers['access-control-allow-origin'], undefined);
  });

  it('serves liveness, readiness and the OpenAPI 3.1 document with interactive docs', async () => {
    assert.deepEqual((await gatehouse.server.inject({ method: 'GET', url: '/healthz' })).json(), {
      status: 'ok',
    });
    const ready = await gatehouse.server.inject({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 200);
    assert.equal(ready.json().status, 'ready');
    const openapi = (await gatehouse.server.inject({ method: 'GET', url: '/openapi.json' })).json();
    assert.equal(openapi.openapi, '3.1.0');
    assert.ok(openapi.paths['/healthz']);
    assert.ok(openapi.paths['/readyz']);
    const docs = await gatehouse.server.inject({ method: 'GET', url: '/docs/' });
    assert.equal(docs.statusCode, 200);
    assert.match(docs.body, /swagger/i);
  });
});

describe('HTTP shell: https deployments and logs', () => {
  it('sends HSTS when the public URL is https', async () => {
    const gatehouse = await startTestGatehouse(backend, { GATEHOUSE_PUBLIC_URL: 'https://auth.example.com' });
    try {
      const response = await gatehouse.server.inject({ method: 'GET', url: '/healthz' });
      assert.match(String(response.headers['strict-transport-security']), /max-age=31536000/);
    } finally {
      await gatehouse.destroy();
    }
  });

  it('logs one line per request with the request id and no credentials', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const gatehouse = await startTestGatehouse(backend, {}, { logger: createLogger('info', sink) });
    try {
      await gatehouse.server.inject({
        method: 'GET',
        url: '/healthz?token=tok-SECRET-1&code=code-SECRET-2&page=3',
        headers: {
          authorization: 'Bearer bearer-SECRET-3',
          cookie: 'sid=cookie-SECRET-4',
          'x-request-id': 'req-log-1',
        },
      });
      gatehouse.logger.info(
        { body: { password: 'pw-SECRET-5', client_secret: 'cs-SECRET-6' } },
        'domain log',
      );
      flushLogs(gatehouse.logger); // the access log batches lines per event-loop turn
      const text = lines.join('');
      assert.ok(!/SECRET/.test(text), text);
      const entries = text
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line));
      const access = entries.find((entry) => entry.msg === 'request');
      assert.equal(access.level, 30);
      assert.match(access.time, /^\d{4}-\d\d-\d\dT/);
      assert.equal(access.service, 'gatehouse');
      assert.equal(access.request_id, 'req-log-1');
      assert.equal(access.status, 200);
      assert.match(access.url, /page=3/);
    } finally {
      await gatehouse.destroy();
    }
  });
});

describe('HTTP shell: text hygiene in JSON bodies', () => {
  let gatehouse: TestGatehouse;
  before(async () => {
    gatehouse = await startTestGatehouse(backend);
    addProbeRoutes(gatehouse);
  });
  after(() => gatehouse.destroy());

  const post = (payload: string | Buffer) =>
    gatehouse.server.inject({
      method: 'POST',
      url: '/probe',
      payload,
      headers: { 'content-type': 'application/json' },
    });

  it('refuses invalid UTF-8, NUL characters, lone surrogates and prototype poisoning with 400', async () => {
    const invalidUtf8 = Buffer.concat([
      Buffer.from('{"name":"a'),
      Buffer.from([0xc3, 0x28]),
      Buffer.from('"}'),
    ]);
    assert.match(assertProblem(await post(invalidUtf8), 400, 'malformed-request').detail, /UTF-8/);
    assert.match(assertProblem(await post('{"name":"a\\u0000b"}'), 400, 'malformed-request').detail, /NUL/);
    assertProblem(await post('{"name":"\\ud800"}'), 400, 'malformed-request');
    assertProblem(await post('{"name":"a","__proto__":{"admin":true}}'), 400, 'malformed-request');
  });
});
