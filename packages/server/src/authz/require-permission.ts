import type { FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { DomainError } from '../errors.ts';
import { isValidPermission, permits } from './permissions.ts';
import type { AuthenticationResult, Principal } from './principal.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the authorization hooks once the caller is authenticated. */
    principal?: Principal;
  }
}

export const AUTH_REALM = 'gatehouse';

/** RFC 6750 §3.1: no credentials at all, so no error code. */
export const CHALLENGE_MISSING = `Bearer realm="${AUTH_REALM}"`;
export const CHALLENGE_INVALID = `Bearer realm="${AUTH_REALM}", error="invalid_token"`;

export function insufficientScopeChallenge(permission: string | null): string {
  // A permission never holds `"` or `\` (see permissions.ts), so it can be quoted as is.
  return `Bearer realm="${AUTH_REALM}", error="insufficient_scope"${permission === null ? '' : `, scope="${permission}"`}`;
}

export type Authenticate = (request: FastifyRequest) => Promise<AuthenticationResult>;
export type PermissionSource = string | ((request: FastifyRequest) => string);

export interface Authorization {
  /** A preHandler (or onRequest) hook: 401 unless authenticated, 403 unless the principal holds `permission`. */
  requirePermission(permission: PermissionSource): preHandlerAsyncHookHandler;
  /** A preHandler (or onRequest) hook: 401 unless authenticated. */
  requireAuthentication(): preHandlerAsyncHookHandler;
  /** Authenticates (once per request) and checks the permission; throws the 401/403 DomainError. */
  authorize(request: FastifyRequest, permission: string): Promise<Principal>;
  /** Authenticates (once per request); throws the 401 DomainError. */
  authenticate(request: FastifyRequest): Promise<Principal>;
}

/**
 * The one authorization helper for Gatehouse's own routes. 401 and 403 follow RFC 6750:
 * no credentials → 401 with a bare Bearer challenge; refused credentials → 401 with
 * error="invalid_token"; authenticated but lacking the permission → 403 with
 * error="insufficient_scope" and the scope needed (no challenge for session cookies, which
 * cannot answer one). Why credentials were refused goes to the log, never to the caller.
 */
export function createAuthorization(authenticate: Authenticate): Authorization {
  async function authenticatePrincipal(request: FastifyRequest): Promise<Principal> {
    if (request.principal) return request.principal;
    const result = await authenticate(request);
    switch (result.outcome) {
      case 'authenticated':
        request.principal = result.principal;
        return result.principal;
      case 'missing':
        throw new DomainError('unauthorized', 'Authentication is required', {
          headers: { 'www-authenticate': CHALLENGE_MISSING },
        });
      case 'invalid':
        request.log.info({ reason: result.reason }, 'credentials refused');
        throw new DomainError('unauthorized', 'The credentials are not valid', {
          headers: { 'www-authenticate': CHALLENGE_INVALID },
        });
    }
  }

  async function authorize(request: FastifyRequest, permission: string): Promise<Principal> {
    const principal = await authenticatePrincipal(request);
    if (permits(principal.permissions, permission)) return principal;
    // A permission built from the request (say an unknown model id with odd characters) that is
    // not valid is granted to nobody; it is not echoed back in the challenge.
    const valid = isValidPermission(permission);
    throw new DomainError(
      'forbidden',
      valid ? `The permission ${permission} is required` : 'The request is not permitted',
      principal.via === 'session'
        ? {}
        : { headers: { 'www-authenticate': insufficientScopeChallenge(valid ? permission : null) } },
    );
  }

  function requirePermission(permission: PermissionSource): preHandlerAsyncHookHandler {
    if (typeof permission === 'string' && !isValidPermission(permission)) {
      // A typo here would lock everyone out of the route (or, with a wildcard, worse): fail at start-up.
      throw new TypeError(`requirePermission: ${JSON.stringify(permission)} is not a valid permission`);
    }
    return async (request) => {
      await authorize(request, typeof permission === 'string' ? permission : permission(request));
    };
  }

  function requireAuthentication(): preHandlerAsyncHookHandler {
    return async (request) => {
      await authenticatePrincipal(request);
    };
  }

  return { requirePermission, requireAuthentication, authorize, authenticate: authenticatePrincipal };
}
