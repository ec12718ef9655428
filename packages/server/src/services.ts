import type { FastifyRequest } from 'fastify';
import type { AppContext } from './app.ts';
import { DatabaseAuditLog } from './audit/audit-service.ts';
import { createAuthenticator } from './authn/authenticate.ts';
import { AuthzService } from './authz/authz-service.ts';
import { insertUserRoles, selectRoleIds } from './authz/authz-store.ts';
import type { AuthenticationResult } from './authz/principal.ts';
import { type Authorization, createAuthorization } from './authz/require-permission.ts';
import { UserAuthzCache } from './authz/user-authz-cache.ts';
import { accountMail } from './identity/account-mail.ts';
import { IdentityService } from './identity/identity-service.ts';
import { PasswordHasher } from './identity/passwords/password-hasher.ts';
import { PasswordPolicy } from './identity/passwords/password-policy.ts';
import { createMailer, type Mailer } from './mail/mailer.ts';
import { createMetrics, type Metrics } from './metrics/metrics.ts';
import { AttemptThrottle, accountPolicies } from './ratelimit/attempt-throttle.ts';
import { type CookieSettings, cookieSettings } from './sessions/cookies.ts';
import { SessionService } from './sessions/session-service.ts';
import { AccessTokenService } from './tokens/access-tokens.ts';
import { REUSE_REVOCATION_REASON, RefreshTokenService } from './tokens/refresh-tokens.ts';
import { RevocationService } from './tokens/revocation.ts';
import { createSigningKeys, type SigningKeyService } from './tokens/signing-keys.ts';
import { TokenService } from './tokens/token-service.ts';

/** Roles every new account starts with. */
export const DEFAULT_ROLES = ['user'];

export interface Services {
  metrics: Metrics;
  audit: DatabaseAuditLog;
  hasher: PasswordHasher;
  policy: PasswordPolicy;
  mailer: Mailer;
  throttle: AttemptThrottle;
  sessions: SessionService;
  identity: IdentityService;
  keys: SigningKeyService;
  accessTokens: AccessTokenService;
  refreshTokens: RefreshTokenService;
  revocation: RevocationService;
  tokens: TokenService;
  authz: AuthzService;
  /** Users' current roles and permissions, cached coherently across nodes (UserAuthzCache). */
  userAuthz: UserAuthzCache;
  authenticate: (request: FastifyRequest) => Promise<AuthenticationResult>;
  authorization: Authorization;
  cookies: CookieSettings;
  /** The `aud` of tokens for Gatehouse's own API. */
  audience: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Builds every domain service and connects their hooks. No HTTP here: the CLI uses the same
 * services (e.g. `gatehouse admin create`) as the server does.
 */
export function createServices(ctx: AppContext): Services {
  const { config, db, state, logger } = ctx;
  const metrics = createMetrics();
  const audit = new DatabaseAuditLog(db, { metrics, logger });
  const hasher = new PasswordHasher({
    memoryKiB: config.argon2MemoryKiB,
    iterations: config.argon2Iterations,
    parallelism: config.argon2Parallelism,
  });
  const policy = new PasswordPolicy({ minLength: config.passwordMinLength });
  const mailer = createMailer({ smtpUrl: config.smtpUrl, from: config.mailFrom, db });
  const throttle = new AttemptThrottle(state);
  const cookies = cookieSettings(config.secureTransport);
  const audience = config.publicUrl;

  const sessions = new SessionService(db, state, {
    idleSeconds: config.sessionIdleSeconds,
    absoluteSeconds: config.sessionAbsoluteSeconds,
    cacheSeconds: config.sessionCacheSeconds,
  });
  const keys = createSigningKeys({ config, db, masterSecret: ctx.masterSecret, logger, audit });
  const accessTokens = new AccessTokenService(keys, {
    issuer: config.publicUrl,
    defaultTtlSeconds: config.accessTokenTtlSeconds,
    defaultAudience: audience,
  });
  const revocation = new RevocationService(db, state, { audit, logger });
  accessTokens.setRevocationCheck((claims) => revocation.isRevoked(claims));
  const reuseCounter = metrics.counter(
    'gatehouse_refresh_reuse_detected_total',
    'Refresh-token families revoked because a used token came back',
  );
  const refreshTokens = new RefreshTokenService(db, {
    absoluteTtlSeconds: config.refreshAbsoluteSeconds,
    idleTtlSeconds: config.refreshIdleSeconds,
    reuseGraceSeconds: config.refreshReuseGraceSeconds,
    audit,
    onReuseDetected: () => reuseCounter.inc(),
    // A stolen refresh token came back: the session it belongs to is compromised too.
    onFamilyRevoked: async (family, reason) => {
      if (reason === REUSE_REVOCATION_REASON && family.sessionId) {
        await sessions.revoke(family.userId, family.sessionId, reason);
      }
    },
  });
  const authz = new AuthzService(db, {
    audit,
    onPermissionsReduced: async (userIds, reason) => {
      for (const userId of userIds) await revocation.bumpUserVersion(userId, reason);
    },
    onChanged: (userIds): Promise<void> => userAuthz.invalidate(userIds),
  });
  const userAuthz: UserAuthzCache = new UserAuthzCache(authz, state, {
    ttlMs: config.sessionCacheSeconds * 1000,
    versionOf: (userId) => revocation.knownVersion(userId),
  });
  const tokenService = new TokenService({ accessTokens, refreshTokens, revocation, db, audit });
  sessions.onRevoked((sessionIds, _userId, reason) => tokenService.revokeForSessions(sessionIds, reason));

  const identity = new IdentityService({
    db,
    hasher,
    policy,
    mail: accountMail(mailer),
    audit,
    throttle,
    policies: accountPolicies(config.loginMaxFailures, config.loginLockSeconds),
    sessions,
    settings: {
      publicUrl: config.publicUrl,
      requireEmailVerification: config.requireEmailVerification,
      verifyTokenSeconds: 24 * 3600,
      resetTokenSeconds: 30 * 60,
    },
    state,
    profileCacheSeconds: config.sessionCacheSeconds,
    onUserCreated: async (tx, userId) => {
      const ids = await selectRoleIds(tx, DEFAULT_ROLES);
      await insertUserRoles(tx, userId, [...ids.values()], null);
    },
  });
  identity.onCredentialsChanged((userId, reason) => tokenService.revokeAllForUser(userId, reason));

  const authenticate = createAuthenticator({
    sessions,
    accessTokens,
    sessionAuthz: userAuthz,
    sessionCookieName: cookies.sessionName,
    audience,
  });
  const authorization = createAuthorization(authenticate);

  return {
    metrics,
    audit,
    userAuthz,
    hasher,
    policy,
    mailer,
    throttle,
    sessions,
    identity,
    keys,
    accessTokens,
    refreshTokens,
    revocation,
    tokens: tokenService,
    authz,
    authenticate,
    authorization,
    cookies,
    audience,
    async start() {
      await keys.start();
      await revocation.start();
      await sessions.start();
      await userAuthz.start();
      await identity.start();
    },
    async stop() {
      await identity.stop();
      await userAuthz.stop();
      await sessions.stop();
      await revocation.stop();
      keys.stop();
      await audit.close();
      await mailer.close();
    },
  };
}
