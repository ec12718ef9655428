import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { FastifyRequest } from 'fastify';
import { backends, startTestGatehouse, type TestGatehouse } from '../../test/support/backends.ts';
import { DatabaseAuditLog } from '../audit/audit-service.ts';
import { loadConfig } from '../config/config.ts';
import { DomainError, StartupError } from '../errors.ts';
import { PROBLEM_BASE } from '../http/problem.ts';
import { createHttpServer, type HttpServer } from '../http/server.ts';
import { createLogger } from '../logging/logger.ts';
import type { Queryable } from '../storage/database.ts';
import { createMetrics } from './metrics.ts';
import { metricsRoutes, startMetricsServer } from './routes.ts';

const backend = backends()[0] as NonNullable<ReturnType<typeof backends>[0]>;
const TOKEN = randomBytes(32).toString('base64url');

function assertUnauthorized(response: {
  statusCode: number;
  headers: Record<string, unknown>;
  body: string;
}) {
  assert.equal(response.statusCode, 401, response.body);
  assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
  assert.match(String(response.headers['www-authenticate']), /^Bearer\b/);
  assert.equal(JSON.parse(response.body).type, `${PROBLEM_BASE}unauthorized`);
}

describe('GET /metrics on the main port (token)', () => {
  let gatehouse: TestGatehouse;
  before(async () => {
    // The real wiring: the app registers the metrics plugin after the health routes, and
    // the hook must still see every route.
    gatehouse = await startTestGatehouse(backend, { GATEHOUSE_METRICS_TOKEN: TOKEN });
  });
  after(() => gatehouse.destroy());

  const scrape = (authorization?: string) =>
    gatehouse.server.inject({
      method: 'GET',
      url: '/metrics',
      headers: authorization ? { authorization } : {},
    });

  it('answers 401 without a token and with a wrong one', async () => {
    assertUnauthorized(await scrape());
    const wrong = await scrape(`Bearer ${TOKEN.slice(0, -1)}x`);
    assertUnauthorized(wrong);
    assert.match(String(wrong.headers['www-authenticate']), /error="invalid_token"/);
    assertUnauthorized(await scrape(`Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}`));
  });

  it('serves the Prometheus text format with the right token, with route patterns as labels', async () => {
    assert.equal((await gatehouse.server.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
    await gatehouse.server.inject({ method: 'GET', url: '/no/such/path/12345' });
    const response = await scrape(`Bearer ${TOKEN}`);
    assert.equal(response.statusCode, 200, response.body);
    assert.match(String(response.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    assert.match(
      response.body,
      /gatehouse_http_request_duration_seconds_bucket\{le="0\.001",method="GET",route="\/healthz",status="200"\} \d+/,
    );
    assert.match(
      response.body,
      /gatehouse_http_request_duration_seconds_count\{method="GET",route="\/healthz",status="200"\} 1\n/,
    );
    assert.match(response.body, /route="\(unmatched\)",status="404"/);
    assert.ok(!response.body.includes('/no/such/path'), 'raw URLs never become labels');
    assert.match(response.body, /process_cpu_user_seconds_total/);
    assert.match(response.body, /route="\/metrics",status="401"/);
  });
});

describe('GET /metrics with an authorizer (metrics:read)', () => {
  let server: HttpServer;
  const asked: string[] = [];
  before(async () => {
    server = await createHttpServer(loadConfig({ GATEHOUSE_LOG_LEVEL: 'silent' }), createLogger('silent'));
    const authorize = async (request: FastifyRequest, permission: string) => {
      asked.push(permission);
      const role = request.headers['x-test-role'];
      if (role === undefined)
        throw new DomainError('unauthorized', 'Sign in', { headers: { 'www-authenticate': 'Bearer' } });
      if (role !== 'operator') throw new DomainError('forbidden', 'Needs metrics:read');
    };
    await server.register(metricsRoutes, { metrics: createMetrics({ defaultMetrics: false }), authorize });
  });
  after(() => server.close());

  it('grants callers the authorizer allows, 401/403 for the others; no token configured', async () => {
    const inject = (headers: Record<string, string>) =>
      server.inject({ method: 'GET', url: '/metrics', headers });
    assertUnauthorized(await inject({}));
    const forbidden = await inject({ 'x-test-role': 'viewer' });
    assert.equal(forbidden.statusCode, 403);
    assert.equal(forbidden.json().type, `${PROBLEM_BASE}forbidden`);
    const allowed = await inject({ 'x-test-role': 'operator' });
    assert.equal(allowed.statusCode, 200, allowed.body);
    assert.match(allowed.body, /gatehouse_http_request_duration_seconds/);
    assert.deepEqual(new Set(asked), new Set(['metrics:read']));
  });
});

describe('metrics on a separate port', () => {
  it('serves /metrics without authentication, nothing else', async () => {
    const metrics = createMetrics();
    metrics.counter('gatehouse_test_events_total', 'test', ['kind']).inc({ kind: 'a' });
    const server = await startMetricsServer(metrics.registry, 0, '127.0.0.1');
    try {
      const response = await fetch(`http://127.0.0.1:${server.port}/metrics`);
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^text\/plain/);
      const body = await response.text();
      assert.match(body, /gatehouse_test_events_total\{kind="a"\} 1/);
      assert.match(body, /nodejs_eventloop_lag_seconds/);
      assert.equal((await fetch(`http://127.0.0.1:${server.port}/other`)).status, 404);
      assert.equal((await fetch(`http://127.0.0.1:${server.port}/metrics`, { method: 'POST' })).status, 405);
    } finally {
      await server.close();
    }
    await assert.rejects(fetch(`http://127.0.0.1:${server.port}/metrics`));
  });
});

describe('metrics registry', () => {
  it('gives domains memoised counters, one registry per app', async () => {
    const one = createMetrics({ defaultMetrics: false });
    const two = createMetrics({ defaultMetrics: false });
    const logins = one.counter('gatehouse_logins_total', 'Logins by outcome', ['outcome']);
    assert.equal(one.counter('gatehouse_logins_total', 'Logins by outcome', ['outcome']), logins);
    assert.throws(() => one.counter('gatehouse_logins_total', 'x', ['other']), /already registered/);
    assert.throws(() => one.gauge('gatehouse_logins_total', 'x', ['outcome']), /already registered/);
    // Another app's registry is independent: same name, no clash.
    two.counter('gatehouse_logins_total', 'Logins by outcome', ['outcome']).inc({ outcome: 'success' }, 3);
    logins.inc({ outcome: 'failure' });
    assert.match(await one.registry.metrics(), /gatehouse_logins_total\{outcome="failure"\} 1/);
    assert.doesNotMatch(await one.registry.metrics(), /outcome="success"/);
    one.counter('gatehouse_refresh_reuse_detected_total', 'Refresh token reuse detected').inc();
    assert.match(await one.registry.metrics(), /gatehouse_refresh_reuse_detected_total 1/);
  });

  it('counts audit events by type and outcome, and reports the audit queue length', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    const nowhere: Queryable = {
      query: async () => ({ rows: [], rowCount: 0 }),
      exec: async () => {},
    };
    const log = new DatabaseAuditLog(nowhere, { metrics, flushIntervalMs: 60_000 });
    log.record({ type: 'login.succeeded', outcome: 'success' });
    log.record({ type: 'login.succeeded', outcome: 'success' });
    log.record({ type: 'login.failed', outcome: 'failure' });
    let text = await metrics.registry.metrics();
    assert.match(text, /gatehouse_audit_events_total\{type="login\.succeeded",outcome="success"\} 2/);
    assert.match(text, /gatehouse_audit_events_total\{type="login\.failed",outcome="failure"\} 1/);
    assert.match(text, /gatehouse_audit_queue_length 3/);
    await log.close();
    text = await metrics.registry.metrics();
    assert.match(text, /gatehouse_audit_queue_length 0/);
  });
});

describe('metrics configuration', () => {
  it('reads GATEHOUSE_METRICS_TOKEN and GATEHOUSE_METRICS_PORT, never printing the token', () => {
    const config = loadConfig({ GATEHOUSE_METRICS_TOKEN: TOKEN, GATEHOUSE_METRICS_PORT: '9464' });
    assert.equal(config.metricsToken, TOKEN);
    assert.equal(config.metricsPort, 9464);
    const unset = loadConfig({});
    assert.equal(unset.metricsToken, undefined);
    assert.equal(unset.metricsPort, undefined);
    assert.throws(
      () => loadConfig({ GATEHOUSE_METRICS_TOKEN: 'too-short-token', GATEHOUSE_METRICS_PORT: 'http' }),
      (error: unknown) => {
        assert.ok(error instanceof StartupError);
        assert.match(error.message, /GATEHOUSE_METRICS_TOKEN=\(hidden\): expected at least 32/);
        assert.match(error.message, /GATEHOUSE_METRICS_PORT="http"/);
        assert.ok(!error.message.includes('too-short-token'));
        return true;
      },
    );
  });
});

describe('request-duration histogram', () => {
  it('exposes cumulative buckets, sum and count per method, route and status', async () => {
    const metrics = createMetrics({ defaultMetrics: false });
    metrics.httpDuration.observe('GET', '/v1/me', 200, 0.002);
    metrics.httpDuration.observe('GET', '/v1/me', 200, 0.2);
    metrics.httpDuration.observe('GET', '/v1/me', 401, 20);
    const text = await metrics.registry.metrics();
    const line = (labels: string) => new RegExp(`^gatehouse_http_request_duration_seconds_${labels}$`, 'm');
    assert.match(text, /^# TYPE gatehouse_http_request_duration_seconds histogram$/m);
    assert.match(text, line('bucket\\{le="0.001",method="GET",route="/v1/me",status="200"\\} 0'));
    assert.match(text, line('bucket\\{le="0.0025",method="GET",route="/v1/me",status="200"\\} 1'));
    assert.match(text, line('bucket\\{le="0.1",method="GET",route="/v1/me",status="200"\\} 1'));
    assert.match(text, line('bucket\\{le="0.25",method="GET",route="/v1/me",status="200"\\} 2'));
    assert.match(text, line('bucket\\{le="\\+Inf",method="GET",route="/v1/me",status="200"\\} 2'));
    assert.match(text, line('sum\\{method="GET",route="/v1/me",status="200"\\} 0.202'));
    assert.match(text, line('count\\{method="GET",route="/v1/me",status="200"\\} 2'));
    assert.match(text, line('bucket\\{le="10",method="GET",route="/v1/me",status="401"\\} 0'));
    assert.match(text, line('bucket\\{le="\\+Inf",method="GET",route="/v1/me",status="401"\\} 1'));
    metrics.registry.resetMetrics();
    assert.doesNotMatch(await metrics.registry.metrics(), /_count\{/);
  });
});
