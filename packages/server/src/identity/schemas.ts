import { Type } from 'typebox';

/** Generous upper bounds: real limits (password policy, email shape) give clearer messages later. */
export const Email = Type.String({
  minLength: 3,
  maxLength: 320,
  description: 'Email address (case-insensitive)',
});
export const Password = Type.String({
  minLength: 1,
  maxLength: 4096,
  description: 'Password (NFKC-normalised; 15 to 128 characters)',
});
export const Name = Type.Union([Type.String({ maxLength: 200 }), Type.Null()]);
export const LinkToken = Type.String({
  minLength: 1,
  maxLength: 256,
  description: 'The token from the emailed link',
});

export const Accepted = Type.Object({ status: Type.Literal('accepted'), message: Type.String() });

export const User = Type.Object({
  id: Type.String({ format: 'uuid' }),
  email: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  status: Type.Union([Type.Literal('active'), Type.Literal('disabled')]),
  emailVerified: Type.Boolean(),
  createdAt: Type.String({ format: 'date-time' }),
});

export const TokenResponse = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('Bearer'),
  expires_in: Type.Integer(),
  refresh_token: Type.Optional(Type.String({ description: 'Absent when delivered as a cookie' })),
  scope: Type.String(),
});

export const RefreshDelivery = Type.Union([Type.Literal('body'), Type.Literal('cookie')], {
  description:
    '`cookie` (browsers): the refresh token comes back in an HttpOnly, SameSite=Strict cookie scoped to /v1/auth/refresh, never in the body',
});
