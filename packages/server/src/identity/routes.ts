import type { FastifyPluginAsync, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { Type } from 'typebox';
import type { AuditLog } from '../audit/audit-log.ts';
import { DomainError } from '../errors.ts';
import { clearCookie, readCookie, setCookie } from '../http/cookies.ts';
import { requestMeta } from '../http/request-meta.ts';
import { type CookieSettings, refreshCookieOptions, sessionCookieOptions } from '../sessions/cookies.ts';
import type { SessionService } from '../sessions/session-service.ts';
import { InvalidGrantError } from '../tokens/refresh-tokens.ts';
import type { TokenResponse, TokenService } from '../tokens/token-service.ts';
import type { IdentityService } from './identity-service.ts';
import * as S from './schemas.ts';

/** The client id of Gatehouse's own first-party API and dashboard. */
export const FIRST_PARTY_CLIENT = 'gatehouse';

export interface AccountRoutesOptions {
  identity: IdentityService;
  sessions: SessionService;
  tokens: TokenService;
  audit: AuditLog;
  cookies: CookieSettings;
  audience: string;
  refreshAbsoluteSeconds: number;
  requireAuthentication: () => preHandlerAsyncHookHandler;
  /** Resolves the caller's roles and permissions for /v1/me. */
  describeAccess: (userId: string) => Promise<{ roles: string[]; permissions: string[] }>;
}

type Delivery = 'body' | 'cookie';

function principalOf(request: FastifyRequest) {
  const principal = request.principal;
  if (!principal) throw new DomainError('unauthorized', 'Authentication required');
  return principal;
}

/** Registration, login, refresh, logout, password reset and email verification; `/v1/me`. */
export const accountRoutes: FastifyPluginAsync<AccountRoutesOptions> = async (server, options) => {
  const { identity, sessions, tokens, cookies } = options;
  const tags = ['accounts'];

  const sendTokens = (reply: FastifyReply, response: TokenResponse, delivery: Delivery) => {
    if (delivery === 'cookie') {
      setCookie(
        reply,
        cookies.refreshName,
        response.refresh_token,
        refreshCookieOptions(cookies, options.refreshAbsoluteSeconds),
      );
      const { refresh_token: _omitted, ...rest } = response;
      return rest;
    }
    return response;
  };

  server.post(
    '/v1/auth/register',
    {
      schema: {
        tags,
        summary: 'Register an account',
        description:
          'Answers 202 identically whether or not the email is registered; the mailbox owner gets a verification link or a notice.',
        body: Type.Object(
          { email: S.Email, password: S.Password, name: Type.Optional(S.Name) },
          { additionalProperties: false },
        ),
        response: { 202: S.Accepted },
      },
    },
    async (request, reply) => {
      await identity.register(
        request.body as { email: string; password: string; name?: string | null },
        requestMeta(request),
      );
      return reply.code(202).send({ status: 'accepted', message: 'Check your email to continue.' });
    },
  );

  server.post(
    '/v1/auth/login',
    {
      schema: {
        tags,
        summary: 'Log in with email and password',
        description:
          'Sets the session cookie and answers with tokens. Failures are one generic 401; repeated failures are throttled (429 with Retry-After).',
        body: Type.Object(
          {
            email: S.Email,
            password: S.Password,
            scope: Type.Optional(
              Type.String({
                maxLength: 2000,
                description: 'Space-separated permissions to narrow the access token to',
              }),
            ),
            refresh_token_delivery: Type.Optional(S.RefreshDelivery),
          },
          { additionalProperties: false },
        ),
        response: { 200: S.TokenResponse },
      },
    },
    async (request, reply) => {
      const body = request.body as {
        email: string;
        password: string;
        scope?: string;
        refresh_token_delivery?: Delivery;
      };
      const meta = requestMeta(request);
      const user = await identity.authenticate(body, meta);
      // A fresh session on every login (no fixation); the one this browser had ends.
      const previous = readCookie(request, cookies.sessionName);
      if (previous) {
        const old = await sessions.validate(previous);
        if (old) await sessions.revoke(old.userId, old.sessionId, 'replaced_by_login');
      }
      const { token, session } = await sessions.create({
        userId: user.id,
        ip: meta.ip,
        userAgent: meta.userAgent,
      });
      const response = await tokens.issue(
        {
          userId: user.id,
          clientId: FIRST_PARTY_CLIENT,
          audience: options.audience,
          scope: body.scope?.split(' ').filter(Boolean),
          sessionId: session.id,
        },
        meta,
      );
      setCookie(
        reply,
        cookies.sessionName,
        token,
        sessionCookieOptions(cookies, sessions.settings.absoluteSeconds),
      );
      request.log.info({ user_id: user.id, session_id: session.id }, 'login');
      return sendTokens(reply, response, body.refresh_token_delivery ?? 'body');
    },
  );

  server.post(
    '/v1/auth/refresh',
    {
      // Browsers refresh with the cookie alone and no body at all.
      preValidation: async (request) => {
        request.body ??= {};
      },
      schema: {
        tags,
        summary: 'Rotate a refresh token',
        description:
          'Takes the refresh token from the body or the refresh cookie. Every use rotates it; a reused token revokes its whole family.',
        body: Type.Object(
          {
            refresh_token: Type.Optional(Type.String({ maxLength: 512 })),
            refresh_token_delivery: Type.Optional(S.RefreshDelivery),
          },
          { additionalProperties: false },
        ),
        response: { 200: S.TokenResponse },
      },
    },
    async (request, reply) => {
      const body = (request.body ?? {}) as { refresh_token?: string; refresh_token_delivery?: Delivery };
      const fromCookie = readCookie(request, cookies.refreshName);
      const refreshToken = body.refresh_token ?? fromCookie;
      if (!refreshToken) {
        throw new DomainError('invalid-grant', 'No refresh token was presented', {
          extensions: { error: 'invalid_grant' },
        });
      }
      try {
        const response = await tokens.refresh(
          { refreshToken, clientId: FIRST_PARTY_CLIENT },
          requestMeta(request),
        );
        const delivery = body.refresh_token_delivery ?? (body.refresh_token ? 'body' : 'cookie');
        return sendTokens(reply, response, delivery);
      } catch (error) {
        if (error instanceof InvalidGrantError) {
          if (!body.refresh_token && fromCookie)
            clearCookie(reply, cookies.refreshName, refreshCookieOptions(cookies, 0));
          throw new DomainError('invalid-grant', 'The refresh token is invalid, expired or revoked', {
            extensions: { error: 'invalid_grant' },
          });
        }
        throw error;
      }
    },
  );

  server.post(
    '/v1/auth/logout',
    {
      preHandler: options.requireAuthentication(),
      schema: {
        tags,
        summary: 'Log out: ends the session, its refresh tokens and the presented access token',
        response: { 204: Type.Null() },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const meta = requestMeta(request);
      if (principal.via === 'session' && principal.sessionId) {
        await sessions.revoke(principal.userId, principal.sessionId, 'logout');
      } else if (principal.tokenId && principal.expiresAt) {
        await tokens.revokeAccessToken(
          { jti: principal.tokenId, sub: principal.userId, exp: principal.expiresAt },
          'logout',
        );
        if (principal.sessionId) await tokens.revokeFamily(principal.sessionId, 'logout');
      }
      clearCookie(reply, cookies.sessionName, sessionCookieOptions(cookies, 0));
      clearCookie(reply, cookies.refreshName, refreshCookieOptions(cookies, 0));
      request.log.info({ user_id: principal.userId }, 'logout');
      options.audit.record({
        type: 'logout',
        outcome: 'success',
        actorId: principal.userId,
        subjectId: principal.userId,
        ...meta,
        details: { via: principal.via },
      });
      return reply.code(204).send();
    },
  );

  server.post(
    '/v1/auth/password-reset/request',
    {
      schema: {
        tags,
        summary: 'Ask for a password reset link',
        description: 'Answers 202 identically whether or not the email is registered.',
        body: Type.Object({ email: S.Email }, { additionalProperties: false }),
        response: { 202: S.Accepted },
      },
    },
    async (request, reply) => {
      await identity.requestPasswordReset((request.body as { email: string }).email, requestMeta(request));
      return reply.code(202).send({
        status: 'accepted',
        message: 'If an account exists for this email, a reset link is on its way.',
      });
    },
  );

  server.post(
    '/v1/auth/password-reset/confirm',
    {
      schema: {
        tags,
        summary: 'Set a new password with a reset link',
        description: 'Ends every session and token of the account.',
        body: Type.Object({ token: S.LinkToken, newPassword: S.Password }, { additionalProperties: false }),
        response: { 204: Type.Null() },
      },
    },
    async (request, reply) => {
      await identity.confirmPasswordReset(
        request.body as { token: string; newPassword: string },
        requestMeta(request),
      );
      return reply.code(204).send();
    },
  );

  server.post(
    '/v1/auth/verify-email',
    {
      schema: {
        tags,
        summary: 'Confirm an email address with the emailed link',
        body: Type.Object({ token: S.LinkToken }, { additionalProperties: false }),
        response: { 204: Type.Null() },
      },
    },
    async (request, reply) => {
      await identity.verifyEmail((request.body as { token: string }).token, requestMeta(request));
      return reply.code(204).send();
    },
  );

  server.post(
    '/v1/auth/verify-email/resend',
    {
      schema: {
        tags,
        summary: 'Send a new verification link',
        description: 'Answers 202 identically whether or not the email is registered or already verified.',
        body: Type.Object({ email: S.Email }, { additionalProperties: false }),
        response: { 202: S.Accepted },
      },
    },
    async (request, reply) => {
      await identity.resendVerification((request.body as { email: string }).email, requestMeta(request));
      return reply
        .code(202)
        .send({ status: 'accepted', message: 'If the account needs verifying, a new link is on its way.' });
    },
  );

  server.get(
    '/v1/me',
    {
      preHandler: options.requireAuthentication(),
      schema: {
        tags,
        summary: 'The calling user',
        security: [{ bearer: [] }],
        response: {
          200: Type.Intersect([
            S.User,
            Type.Object({ roles: Type.Array(Type.String()), permissions: Type.Array(Type.String()) }),
          ]),
        },
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const profile = await identity.getProfile(principal.userId);
      const access = principal.via === 'session' ? principal : await options.describeAccess(principal.userId);
      return {
        ...profile,
        roles: access.roles,
        permissions: principal.via === 'session' ? access.permissions : principal.permissions,
      };
    },
  );

  server.post(
    '/v1/me/password',
    {
      preHandler: options.requireAuthentication(),
      schema: {
        tags,
        summary: 'Change the password (the current one is required)',
        description: 'Ends every other session and every token of the account.',
        body: Type.Object(
          { currentPassword: S.Password, newPassword: S.Password },
          { additionalProperties: false },
        ),
        response: { 204: Type.Null() },
      },
    },
    async (request, reply) => {
      const principal = principalOf(request);
      const body = request.body as { currentPassword: string; newPassword: string };
      await identity.changePassword(
        {
          userId: principal.userId,
          currentPassword: body.currentPassword,
          newPassword: body.newPassword,
          currentSessionId: principal.via === 'session' ? principal.sessionId : null,
        },
        requestMeta(request),
      );
      return reply.code(204).send();
    },
  );
};
