import type { FastifyRequest } from 'fastify';
import type { AuthenticationResult } from '../authz/principal.ts';
import type { UserAuthzCache } from '../authz/user-authz-cache.ts';
import { readCookie } from '../http/cookies.ts';
import type { SessionService } from '../sessions/session-service.ts';
import type { AccessTokenService } from '../tokens/access-tokens.ts';
import { InvalidTokenError } from '../tokens/jwt.ts';

const BEARER = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/;

/**
 * Establishes who is calling. An Authorization header wins over the session cookie (it is what
 * the caller chose to present, and it is CSRF-proof); a malformed one is refused outright rather
 * than falling back to the cookie.
 */
export function createAuthenticator(deps: {
  sessions: SessionService;
  accessTokens: AccessTokenService;
  /** Roles and permissions of a cookie's user (cached; tokens carry their own). */
  sessionAuthz: UserAuthzCache;
  sessionCookieName: string;
  audience: string;
}): (request: FastifyRequest) => Promise<AuthenticationResult> {
  return async (request) => {
    const header = request.headers.authorization;
    if (header !== undefined) {
      const match = BEARER.exec(header);
      if (!match?.[1]) return { outcome: 'invalid', reason: 'malformed_authorization_header' };
      try {
        const claims = await deps.accessTokens.verify(match[1], { audience: deps.audience });
        return {
          outcome: 'authenticated',
          principal: {
            userId: claims.sub,
            via: 'access_token',
            sessionId: claims.sid ?? null,
            tokenId: claims.jti,
            clientId: claims.client_id ?? null,
            roles: claims.roles ?? [],
            permissions: claims.perms ?? [],
            expiresAt: claims.exp,
          },
        };
      } catch (error) {
        if (error instanceof InvalidTokenError) return { outcome: 'invalid', reason: error.reason };
        throw error;
      }
    }
    const cookie = readCookie(request, deps.sessionCookieName);
    if (!cookie) return { outcome: 'missing' };
    const session = await deps.sessions.validate(cookie);
    if (!session) return { outcome: 'invalid', reason: 'session_invalid' };
    const { roles, permissions } = await deps.sessionAuthz.get(session.userId);
    return {
      outcome: 'authenticated',
      principal: {
        userId: session.userId,
        via: 'session',
        sessionId: session.sessionId,
        tokenId: null,
        clientId: null,
        roles,
        permissions,
        expiresAt: null,
      },
    };
  };
}
