import assert from 'node:assert/strict';
import type { LightMyRequestResponse } from 'fastify';
import type { TestGatehouse } from './backends.ts';

export const STRONG_PASSWORD = 'correct horse battery staple 42';
export const OTHER_PASSWORD = 'a different passphrase, long enough';

let counter = 0;
export function uniqueEmail(prefix = 'user'): string {
  counter += 1;
  return `${prefix}-${Date.now().toString(36)}-${counter}@example.com`;
}

export interface Client {
  ip: string;
  cookies: Map<string, string>;
}

export function client(ip = '203.0.113.10'): Client {
  return { ip, cookies: new Map() };
}

function cookieHeader(c: Client): string | undefined {
  if (c.cookies.size === 0) return undefined;
  return [...c.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
}

/** Sends a request as a browser-like client (keeps cookies, sends a same-origin Origin on writes). */
export async function call(
  gatehouse: TestGatehouse,
  c: Client,
  method: 'GET' | 'POST' | 'DELETE' | 'PATCH' | 'PUT',
  url: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  const cookie = cookieHeader(c);
  const response = await gatehouse.server.inject({
    method,
    url,
    remoteAddress: c.ip,
    headers: {
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(method !== 'GET' ? { origin: gatehouse.config.publicUrl } : {}),
      ...(cookie ? { cookie } : {}),
      ...headers,
    },
    ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
  });
  for (const set of response.cookies as { name: string; value: string; maxAge?: number; expires?: Date }[]) {
    const expired =
      set.value === '' || set.maxAge === 0 || (set.expires && set.expires.getTime() < Date.now());
    if (expired) c.cookies.delete(set.name);
    else c.cookies.set(set.name, set.value);
  }
  return response;
}

/** Creates a verified user with the given roles straight through the services. */
export async function createUser(
  gatehouse: TestGatehouse,
  options: { email?: string; password?: string; roles?: string[] } = {},
): Promise<{ id: string; email: string; password: string }> {
  const email = options.email ?? uniqueEmail();
  const password = options.password ?? STRONG_PASSWORD;
  const user = await gatehouse.services.identity.createUser({ email, password });
  if (options.roles) await gatehouse.services.authz.setUserRoles(user.id, options.roles, null);
  return { id: user.id, email, password };
}

export async function login(
  gatehouse: TestGatehouse,
  c: Client,
  email: string,
  password: string,
  extra: Record<string, unknown> = {},
) {
  const response = await call(gatehouse, c, 'POST', '/v1/auth/login', { email, password, ...extra });
  assert.equal(response.statusCode, 200, response.body);
  return response.json() as {
    access_token: string;
    refresh_token?: string;
    expires_in: number;
    scope: string;
  };
}

/** The newest dev-outbox mail to an address, and the token in its first link. */
export async function lastMail(
  gatehouse: TestGatehouse,
  to: string,
): Promise<{ subject: string; text: string; token: string | null }> {
  const { rows } = await gatehouse.db.query<{ subject: string; text_body: string }>(
    'SELECT subject, text_body FROM mail_outbox WHERE to_address = $1 ORDER BY created_at DESC LIMIT 1',
    [to],
  );
  const mail = rows[0];
  assert.ok(mail, `a mail was sent to ${to}`);
  const token = /[?&]token=([A-Za-z0-9_-]+)/.exec(mail.text_body)?.[1] ?? null;
  return { subject: mail.subject, text: mail.text_body, token };
}

/** Waits for fire-and-forget work (mail delivery, audit batches) to land. */
export async function settle(gatehouse: TestGatehouse, ms = 50): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
  await gatehouse.services.audit.flush();
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}
