import type { AuditLog, RequestMeta } from '../audit/audit-log.ts';
import { intersectScopes } from '../authz/permissions.ts';
import type { Database } from '../storage/database.ts';
import { isUuid } from '../storage/ids.ts';
import type { AccessTokenService } from './access-tokens.ts';
import type { RefreshTokenService } from './refresh-tokens.ts';
import type { RevocationService } from './revocation.ts';
import { selectTokenSubject, type TokenSubject } from './subject-store.ts';

/** The RFC 6749 §5.1 token response every grant answers with. */
export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  refresh_token: string;
  scope: string;
}

export interface GrantContext {
  userId: string;
  clientId: string;
  audience: string;
  /** Requested scopes; undefined means "everything the subject holds". */
  scope?: string[] | undefined;
  /** The browser session (first-party login) or null (OAuth grants). */
  sessionId: string | null;
}

/**
 * The one token service behind every way in (first-party login now, OAuth grants later):
 * one claims builder, one refresh-family model, one revocation path. A token never carries
 * more than its subject holds: requested scopes are intersected with the user's permissions
 * at issuance and again at every refresh, so a role change takes effect at the next token.
 */
export class TokenService {
  private readonly accessTokens: AccessTokenService;
  private readonly refreshTokens: RefreshTokenService;
  private readonly revocation: RevocationService;
  private readonly db: Database;
  private readonly audit: AuditLog;

  constructor(deps: {
    accessTokens: AccessTokenService;
    refreshTokens: RefreshTokenService;
    revocation: RevocationService;
    db: Database;
    audit: AuditLog;
  }) {
    this.accessTokens = deps.accessTokens;
    this.refreshTokens = deps.refreshTokens;
    this.revocation = deps.revocation;
    this.db = deps.db;
    this.audit = deps.audit;
  }

  /** Read fresh from the database on every grant: a token must not outlive a role removal through a cache. */
  private subject(userId: string): Promise<TokenSubject> {
    if (!isUuid(userId)) return Promise.resolve({ roles: [], permissions: [], version: 0 });
    return selectTokenSubject(this.db, userId);
  }

  private async accessToken(
    userId: string,
    clientId: string,
    audience: string,
    requested: string[] | undefined,
    sid: string,
    held: TokenSubject,
  ) {
    const scope = requested ? intersectScopes(requested, held.permissions) : held.permissions;
    const issued = await this.accessTokens.issue({
      subject: userId,
      audience,
      clientId,
      scope,
      sessionId: sid,
      roles: held.roles,
      permissions: scope,
      tokenVersion: held.version,
    });
    return { ...issued, scope };
  }

  /** A new grant: a refresh family plus its first access token. */
  async issue(grant: GrantContext, meta: RequestMeta): Promise<TokenResponse> {
    const held = await this.subject(grant.userId);
    const scope = grant.scope ? intersectScopes(grant.scope, held.permissions) : undefined;
    const family = await this.refreshTokens.createFamily({
      userId: grant.userId,
      clientId: grant.clientId,
      sessionId: grant.sessionId,
      scope: scope ?? [],
      audience: grant.audience,
    });
    const access = await this.accessToken(
      grant.userId,
      grant.clientId,
      grant.audience,
      scope,
      family.familyId,
      held,
    );
    this.audit.record({
      type: 'token.issued',
      outcome: 'success',
      actorId: grant.userId,
      subjectId: grant.userId,
      ...meta,
      details: {
        client_id: grant.clientId,
        family_id: family.familyId,
        grant: grant.sessionId ? 'login' : 'grant',
      },
    });
    return {
      access_token: access.token,
      token_type: 'Bearer',
      expires_in: access.expiresIn,
      refresh_token: family.refreshToken,
      scope: access.scope.join(' '),
    };
  }

  /** Rotates a refresh token (throws InvalidGrantError) and issues a fresh access token. */
  async refresh(
    input: { refreshToken: string; clientId: string },
    meta: RequestMeta,
  ): Promise<TokenResponse> {
    const { family, subject, refreshToken } = await this.refreshTokens.rotate({
      refreshToken: input.refreshToken,
      clientId: input.clientId,
      meta,
    });
    const requested = family.scope.length > 0 ? family.scope : undefined;
    const access = await this.accessToken(
      family.userId,
      family.clientId,
      family.audience,
      requested,
      family.id,
      subject,
    );
    this.audit.record({
      type: 'token.refreshed',
      outcome: 'success',
      actorId: family.userId,
      subjectId: family.userId,
      ...meta,
      details: { client_id: family.clientId, family_id: family.id },
    });
    return {
      access_token: access.token,
      token_type: 'Bearer',
      expires_in: access.expiresIn,
      refresh_token: refreshToken,
      scope: access.scope.join(' '),
    };
  }

  /** Kills one presented access token until its expiry (logout). */
  async revokeAccessToken(claims: { jti: string; sub: string; exp: number }, reason: string): Promise<void> {
    await this.revocation.revokeAccessToken({
      jti: claims.jti,
      userId: claims.sub,
      expiresAt: claims.exp,
      reason,
    });
  }

  /** Kills every token the user holds: password change or reset, disable, log out everywhere, lost permissions. */
  async revokeAllForUser(userId: string, reason: string): Promise<void> {
    await this.revocation.bumpUserVersion(userId, reason);
    await this.refreshTokens.revokeAllForUser(userId, reason);
  }

  async revokeFamily(familyId: string, reason: string): Promise<void> {
    await this.refreshTokens.revokeFamily(familyId, reason);
  }

  /** Sessions ended: their refresh families end too. */
  async revokeForSessions(sessionIds: string[], reason: string): Promise<void> {
    for (const id of sessionIds) await this.refreshTokens.revokeFamiliesForSession(id, reason);
  }
}
