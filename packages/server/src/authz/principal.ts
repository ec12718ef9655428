/** Who is calling, as established by a session cookie or a verified access token. */
export interface Principal {
  userId: string;
  via: 'session' | 'access_token';
  /** Session id (cookie) or the token's `sid` (session or refresh family). */
  sessionId: string | null;
  /** The access token's `jti`, when authenticated by token. */
  tokenId: string | null;
  clientId: string | null;
  roles: string[];
  /** Effective permissions: for a token, its scope-narrowed permissions; for a session, the user's. */
  permissions: string[];
  /** Token expiry (epoch seconds), when authenticated by token. */
  expiresAt: number | null;
}

/**
 * How a request proved who it is. `missing`: no credentials at all (RFC 6750: answer 401
 * without an error code). `invalid`: credentials presented but refused (error="invalid_token").
 * `reason` is internal (logs, audit), never sent to the caller.
 */
export type AuthenticationResult =
  | { outcome: 'authenticated'; principal: Principal }
  | { outcome: 'missing' }
  | { outcome: 'invalid'; reason: string };
