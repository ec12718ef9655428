import type { CookieAttributes } from '../http/cookies.ts';

/**
 * Cookie names and attributes. Over https the session cookie carries the `__Host-` prefix
 * (Secure, Path=/, no Domain: it cannot be set by a sibling subdomain or read over http).
 * Browsers refuse `__Host-`/`__Secure-` cookies without Secure, so plain http (a laptop
 * set-up) uses unprefixed names.
 */
export interface CookieSettings {
  secure: boolean;
  sessionName: string;
  refreshName: string;
  refreshPath: string;
}

export const REFRESH_PATH = '/v1/auth/refresh';

export function cookieSettings(secure: boolean): CookieSettings {
  return {
    secure,
    sessionName: secure ? '__Host-gh_session' : 'gh_session',
    refreshName: secure ? '__Secure-gh_refresh' : 'gh_refresh',
    refreshPath: REFRESH_PATH,
  };
}

export function sessionCookieOptions(settings: CookieSettings, maxAgeSeconds: number): CookieAttributes {
  return { httpOnly: true, secure: settings.secure, sameSite: 'lax', path: '/', maxAge: maxAgeSeconds };
}

/** The refresh cookie is only ever sent to the refresh endpoint, and never cross-site. */
export function refreshCookieOptions(settings: CookieSettings, maxAgeSeconds: number): CookieAttributes {
  return {
    httpOnly: true,
    secure: settings.secure,
    sameSite: 'strict',
    path: settings.refreshPath,
    maxAge: maxAgeSeconds,
  };
}
