import formbody from '@fastify/formbody';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { DomainError } from '../errors.ts';
import { requestMeta } from '../http/request-meta.ts';
import { escapeHtml } from '../mail/templates.ts';
import type { IdentityService } from './identity-service.ts';

/**
 * The pages the emailed links open. A link only shows a form: the action happens on POST, so
 * mail scanners that prefetch links cannot consume a token. Plain HTML forms, no script, so
 * the strict Content-Security-Policy of the API stays as it is.
 */
function page(reply: FastifyReply, status: number, title: string, body: string): FastifyReply {
  return reply
    .code(status)
    .type('text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .send(
      `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">` +
        `<meta name="referrer" content="no-referrer"><title>${escapeHtml(title)} · Gatehouse</title></head>` +
        `<body><main><h1>${escapeHtml(title)}</h1>${body}</main></body></html>`,
    );
}

const TokenQuery = Type.Object({ token: Type.Optional(Type.String({ maxLength: 256 })) });

/** Renders a refused action (bad link, weak password, throttled) as a page; anything else propagates. */
function refusalPage(
  reply: FastifyReply,
  error: unknown,
  title: string,
  render: (message: string) => string,
): FastifyReply {
  if (!(error instanceof DomainError)) throw error;
  const fields = (error.extensions.errors as { detail: string }[] | undefined)?.map((f) => f.detail) ?? [];
  const message = [...new Set([error.detail ?? '', ...fields].filter(Boolean))].join(' ');
  return page(reply, error.kind === 'rate-limited' ? 429 : 400, title, render(message));
}

export const accountPages: FastifyPluginAsync<{ identity: IdentityService }> = async (
  server,
  { identity },
) => {
  await server.register(formbody, { bodyLimit: 8192 });
  const schema = { hide: true, querystring: TokenQuery };

  server.get('/account/verify-email', { schema }, async (request, reply) => {
    const token = (request.query as { token?: string }).token ?? '';
    return page(
      reply,
      200,
      'Confirm your email address',
      `<form method="post" action="/account/verify-email"><input type="hidden" name="token" value="${escapeHtml(token)}">` +
        `<button type="submit">Confirm my email address</button></form>`,
    );
  });

  server.post(
    '/account/verify-email',
    {
      schema: {
        hide: true,
        body: Type.Object({ token: Type.String({ maxLength: 256 }) }, { additionalProperties: false }),
      },
    },
    async (request, reply) => {
      try {
        await identity.verifyEmail((request.body as { token: string }).token, requestMeta(request));
        return page(
          reply,
          200,
          'Email address confirmed',
          '<p>Thank you. You can close this page and sign in.</p>',
        );
      } catch (error) {
        return refusalPage(
          reply,
          error,
          'This link cannot be used',
          (message) => `<p>${escapeHtml(message)}</p>`,
        );
      }
    },
  );

  const resetForm = (token: string, message = '') =>
    `${message ? `<p role="alert">${escapeHtml(message)}</p>` : ''}` +
    `<form method="post" action="/account/reset-password"><input type="hidden" name="token" value="${escapeHtml(token)}">` +
    `<p><label>New password (at least 15 characters)<br><input type="password" name="newPassword" autocomplete="new-password" required minlength="8" maxlength="512"></label></p>` +
    `<p><button type="submit">Set new password</button></p></form>`;

  server.get('/account/reset-password', { schema }, async (request, reply) =>
    page(reply, 200, 'Choose a new password', resetForm((request.query as { token?: string }).token ?? '')),
  );

  server.post(
    '/account/reset-password',
    {
      schema: {
        hide: true,
        body: Type.Object(
          { token: Type.String({ maxLength: 256 }), newPassword: Type.String({ maxLength: 4096 }) },
          { additionalProperties: false },
        ),
      },
    },
    async (request, reply) => {
      const body = request.body as { token: string; newPassword: string };
      try {
        await identity.confirmPasswordReset(body, requestMeta(request));
        return page(
          reply,
          200,
          'Password changed',
          '<p>Your password is changed and every session was signed out. Sign in with the new password.</p>',
        );
      } catch (error) {
        return refusalPage(reply, error, 'Choose a new password', (message) =>
          resetForm(body.token, message),
        );
      }
    },
  );
};
