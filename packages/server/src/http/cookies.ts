import { parseCookie, type SetCookie, stringifySetCookie } from 'cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';

/** Set-Cookie attributes (the `cookie` package's, without name and value). */
export type CookieAttributes = Omit<SetCookie, 'name' | 'value'>;

/**
 * Cookies are read and written where a route needs them, with the `cookie` package directly.
 * @fastify/cookie parsed every request's Cookie header in an onRequest hook and ran an onSend
 * hook on every response, whether or not the route used cookies: two hook chains on the hottest
 * paths (/healthz, bearer-authenticated model calls) for what a handful of routes need.
 */
export function readCookie(request: FastifyRequest, name: string): string | undefined {
  const header = request.headers.cookie;
  if (header === undefined || !header.includes(name)) return undefined;
  return parseCookie(header)[name];
}

/** Adds a Set-Cookie header (Fastify keeps every Set-Cookie value of a reply). */
export function setCookie(
  reply: FastifyReply,
  name: string,
  value: string,
  attributes: CookieAttributes,
): void {
  reply.header('set-cookie', stringifySetCookie({ name, value, ...attributes }));
}

/** Tells the browser to drop a cookie: same name and path, empty and expired. */
export function clearCookie(reply: FastifyReply, name: string, attributes: CookieAttributes): void {
  const { maxAge: _ignored, ...rest } = attributes;
  setCookie(reply, name, '', { ...rest, expires: new Date(0) });
}
