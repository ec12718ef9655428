import type { AuditLog, RequestMeta } from '../audit/audit-log.ts';
import { generateToken, hashToken } from '../crypto/random-token.ts';
import { DomainError } from '../errors.ts';
import type {
  AccountPolicies,
  AttemptThrottle,
  ThrottlePolicy,
  ThrottleVerdict,
} from '../ratelimit/attempt-throttle.ts';
import type { SessionService } from '../sessions/session-service.ts';
import { BroadcastCache } from '../state/broadcast-cache.ts';
import type { StateStore } from '../state/state-store.ts';
import type { Database, Queryable } from '../storage/database.ts';
import { isValidEmail, normalizeEmail } from './email-address.ts';
import { preloadCommonPasswords } from './passwords/common-passwords.ts';
import type { PasswordHasher } from './passwords/password-hasher.ts';
import { normalizePassword, type PasswordPolicy } from './passwords/password-policy.ts';
import * as users from './user-store.ts';

/** The mails the account flows send; src/identity/account-mail.ts renders and delivers them. */
export interface AccountMail {
  verifyEmail(to: string, link: string): Promise<void>;
  resetPassword(to: string, link: string): Promise<void>;
  accountExists(to: string): Promise<void>;
  passwordChanged(to: string): Promise<void>;
}

/** Called when a user's credentials or standing change, so every token they hold dies. */
export type CredentialsChangedHook = (userId: string, reason: string) => Promise<void>;

export interface IdentitySettings {
  publicUrl: string;
  requireEmailVerification: boolean;
  verifyTokenSeconds: number;
  resetTokenSeconds: number;
}

export interface PublicUser {
  id: string;
  email: string;
  name: string | null;
  status: 'active' | 'disabled';
  emailVerified: boolean;
  createdAt: string;
}

export function publicUser(row: users.UserRow): PublicUser {
  return {
    id: row.id,
    email: row.email,
    name: row.name,
    status: row.status,
    emailVerified: row.email_verified,
    createdAt: row.created_at.toISOString(),
  };
}

const INVALID_CREDENTIALS = 'Invalid email or password';
const INVALID_LINK = 'The link is invalid or has expired; request a new one';

function rateLimited(retryAfterSeconds: number): DomainError {
  return new DomainError('rate-limited', 'Too many attempts; wait before trying again', {
    headers: { 'retry-after': String(retryAfterSeconds) },
    extensions: { retry_after: retryAfterSeconds },
  });
}

interface Dependencies {
  db: Database;
  hasher: PasswordHasher;
  policy: PasswordPolicy;
  mail: AccountMail;
  audit: AuditLog;
  throttle: AttemptThrottle;
  policies: AccountPolicies;
  sessions: SessionService;
  settings: IdentitySettings;
  /** Carries profile-cache invalidations between processes. */
  state: StateStore;
  /** How long GET /v1/me may serve a profile without re-reading it (the session cache's lifetime). */
  profileCacheSeconds: number;
  /** Runs inside the transaction that creates a user (grants the default roles). */
  onUserCreated: (tx: Queryable, userId: string) => Promise<void>;
}

/**
 * Accounts: registration, password login with its defences, password change and reset,
 * email verification. Every path that could tell an attacker whether an email is registered
 * answers the same and does the same work.
 */
export class IdentityService {
  private readonly deps: Dependencies;
  private readonly credentialHooks: CredentialsChangedHook[] = [];
  private readonly profiles: BroadcastCache<PublicUser>;

  constructor(deps: Dependencies) {
    this.deps = deps;
    this.profiles = new BroadcastCache(deps.state, 'users.changed', {
      ttlMs: deps.profileCacheSeconds * 1000,
    });
  }

  start(): Promise<void> {
    return this.profiles.start();
  }

  stop(): Promise<void> {
    return this.profiles.stop();
  }

  /** Profile fields changed (status, verified, name): every process re-reads them. */
  private profileChanged(userId: string): Promise<void> {
    return this.profiles.invalidate([userId]);
  }

  onCredentialsChanged(hook: CredentialsChangedHook): void {
    this.credentialHooks.push(hook);
  }

  private async credentialsChanged(userId: string, reason: string): Promise<void> {
    for (const hook of this.credentialHooks) await hook(userId, reason);
  }

  private async guard(
    policy: ThrottlePolicy,
    parts: string[],
    meta: RequestMeta,
    type: string,
  ): Promise<ThrottleVerdict> {
    const verdict = await this.deps.throttle.check(policy, parts);
    if (!verdict.allowed) {
      this.deps.audit.record({
        type,
        outcome: 'failure',
        ...meta,
        details: { reason: 'throttled', policy: policy.name },
      });
      throw rateLimited(verdict.retryAfterSeconds);
    }
    return verdict;
  }

  private validEmail(raw: string): string {
    const email = normalizeEmail(raw);
    if (!isValidEmail(email)) {
      throw new DomainError('validation-error', 'The email address is not valid', {
        extensions: { errors: [{ pointer: '/email', detail: 'is not a valid email address' }] },
      });
    }
    return email;
  }

  /**
   * Loads the common-password list on first use, in slices that let other requests run in
   * between (the synchronous load would stall the event loop for ~0.15 s), then applies the policy.
   */
  private async checkPassword(
    password: string,
    context: { email: string; name?: string | null },
    pointer = '/password',
  ): Promise<string> {
    await preloadCommonPasswords();
    const normalized = normalizePassword(password);
    const violations = this.deps.policy.check(normalized, context);
    if (violations.length > 0) {
      throw new DomainError('validation-error', violations.map((v) => v.message).join(' '), {
        extensions: { errors: violations.map((v) => ({ pointer, detail: v.message, code: v.code })) },
      });
    }
    return normalized;
  }

  private link(path: string, token: string): string {
    return `${this.deps.settings.publicUrl}${path}?token=${encodeURIComponent(token)}`;
  }

  /** Delivery happens off the request path, so an existing and a new email take equally long. */
  private deliver(send: () => Promise<void>, userId: string | null, meta: RequestMeta, type: string): void {
    send().catch((error: unknown) => {
      this.deps.audit.record({
        type,
        outcome: 'failure',
        subjectId: userId,
        ...meta,
        details: { reason: 'mail_failed', error: String((error as Error).message) },
      });
    });
  }

  /** Registration answers identically whether or not the email is taken; the owner of a taken one gets a mail. */
  async register(
    input: { email: string; password: string; name?: string | null },
    meta: RequestMeta,
  ): Promise<void> {
    const email = this.validEmail(input.email);
    const name = input.name?.trim() || null;
    const password = await this.checkPassword(input.password, { email, name });
    const ipKey = [meta.ip ?? 'unknown'];
    const verdict = await this.deps.throttle.hit(this.deps.policies.register, ipKey);
    if (!verdict.allowed) throw rateLimited(verdict.retryAfterSeconds);

    const passwordHash = await this.deps.hasher.hash(password);
    const created = await this.deps.db.transaction(async (tx) => {
      const user = await users.insertUser(tx, { email, name, passwordHash });
      if (!user) return undefined;
      await this.deps.onUserCreated(tx, user.id);
      const token = generateToken();
      await users.insertEmailToken(tx, {
        tokenHash: hashToken(token),
        userId: user.id,
        purpose: 'verify_email',
        ttlSeconds: this.deps.settings.verifyTokenSeconds,
      });
      return { user, token };
    });
    if (created) {
      this.deps.audit.record({
        type: 'user.registered',
        outcome: 'success',
        actorId: created.user.id,
        subjectId: created.user.id,
        ...meta,
      });
      this.deliver(
        () => this.deps.mail.verifyEmail(email, this.link('/account/verify-email', created.token)),
        created.user.id,
        meta,
        'mail.verify_email',
      );
    } else {
      const existing = await users.findUserByEmail(this.deps.db, email);
      this.deps.audit.record({
        type: 'user.registered',
        outcome: 'failure',
        subjectId: existing?.id ?? null,
        ...meta,
        details: { reason: 'email_taken' },
      });
      this.deliver(
        () => this.deps.mail.accountExists(email),
        existing?.id ?? null,
        meta,
        'mail.account_exists',
      );
    }
  }

  /**
   * Password login. Unknown email, wrong password, disabled or (when required) unverified
   * account all fail with one message after the same work: an unknown email is verified
   * against a dummy hash. Failures are throttled per account+IP and per IP.
   */
  async authenticate(input: { email: string; password: string }, meta: RequestMeta): Promise<users.UserRow> {
    const email = normalizeEmail(input.email);
    const ip = meta.ip ?? 'unknown';
    const [accountIp] = await Promise.all([
      this.guard(this.deps.policies.loginAccountIp, [email, ip], meta, 'login.locked'),
      this.guard(this.deps.policies.loginIp, [ip], meta, 'login.locked'),
    ]);

    const password = normalizePassword(input.password);
    const user = isValidEmail(email) ? await users.findUserByEmail(this.deps.db, email) : undefined;
    let reason: string | null = null;
    let needsRehash = false;
    if (!user?.password_hash) {
      await this.deps.hasher.verifyDummy(password);
      reason = user ? 'no_password' : 'unknown_email';
    } else {
      const result = await this.deps.hasher.verify(user.password_hash, password);
      needsRehash = result.needsRehash;
      if (!result.ok) reason = 'wrong_password';
      else if (user.status !== 'active') reason = 'disabled';
      else if (this.deps.settings.requireEmailVerification && !user.email_verified) reason = 'unverified';
    }

    if (reason !== null || !user) {
      await Promise.all([
        this.deps.throttle.fail(this.deps.policies.loginAccountIp, [email, ip]),
        this.deps.throttle.fail(this.deps.policies.loginIp, [ip]),
      ]);
      this.deps.audit.record({
        type: 'login.failed',
        outcome: 'failure',
        subjectId: user?.id ?? null,
        ...meta,
        details: { reason },
      });
      throw new DomainError('unauthorized', INVALID_CREDENTIALS);
    }
    // Counters that were never started need no reset (the common case: one round trip saved).
    if (accountIp.failures > 0)
      await this.deps.throttle.reset(this.deps.policies.loginAccountIp, [email, ip]);
    this.deps.audit.record({
      type: 'login.succeeded',
      outcome: 'success',
      actorId: user.id,
      subjectId: user.id,
      ...meta,
    });
    if (needsRehash) {
      // Parameters changed (or an imported bcrypt hash): upgrade while we hold the plaintext.
      await users.updatePasswordHash(this.deps.db, user.id, await this.deps.hasher.hash(password), false);
    }
    return user;
  }

  /**
   * The public profile, served from a short per-process cache (GET /v1/me is on the path of
   * every page load); every change below invalidates it on all processes.
   */
  getProfile(userId: string): Promise<PublicUser> {
    return this.profiles.get(userId, async () => publicUser(await this.getUser(userId)));
  }

  /** Admin: corrects profile fields (name, verified flag); audited. */
  async updateProfile(
    userId: string,
    changes: { name?: string | null; emailVerified?: boolean },
    actorId: string,
    meta: RequestMeta,
  ): Promise<void> {
    const user = await this.getUser(userId);
    const verified = changes.emailVerified !== undefined && changes.emailVerified !== user.email_verified;
    const name = changes.name === undefined ? undefined : changes.name?.trim() || null;
    const renamed = name !== undefined && name !== user.name;
    if (!verified && !renamed) return;
    await this.deps.db.transaction(async (tx) => {
      if (verified) await users.setEmailVerified(tx, userId, changes.emailVerified as boolean);
      if (renamed) await users.updateUserName(tx, userId, name);
    });
    await this.profileChanged(userId);
    // Which fields changed and the new verification state; never the name itself (personal data).
    this.deps.audit.record({
      type: 'user.updated',
      outcome: 'success',
      actorId,
      subjectId: userId,
      ...meta,
      details: {
        ...(verified ? { email_verified: changes.emailVerified } : {}),
        ...(renamed ? { name_changed: true } : {}),
      },
    });
  }

  async getUser(userId: string): Promise<users.UserRow> {
    const user = await users.findUserById(this.deps.db, userId);
    if (!user) throw new DomainError('not-found', 'No such user');
    return user;
  }

  /** Changes the password (current one required); every other session and every token ends. */
  async changePassword(
    input: { userId: string; currentPassword: string; newPassword: string; currentSessionId: string | null },
    meta: RequestMeta,
  ): Promise<void> {
    const user = await this.getUser(input.userId);
    await this.guard(
      this.deps.policies.loginAccountIp,
      [user.email, meta.ip ?? 'unknown'],
      meta,
      'password.change_locked',
    );
    const current = await this.deps.hasher.verify(
      user.password_hash ?? '',
      normalizePassword(input.currentPassword),
    );
    if (!current.ok) {
      await this.deps.throttle.fail(this.deps.policies.loginAccountIp, [user.email, meta.ip ?? 'unknown']);
      this.deps.audit.record({
        type: 'password.changed',
        outcome: 'failure',
        actorId: user.id,
        subjectId: user.id,
        ...meta,
        details: { reason: 'wrong_current_password' },
      });
      throw new DomainError('forbidden', 'The current password is not correct');
    }
    const password = await this.checkPassword(input.newPassword, user, '/newPassword');
    const hash = await this.deps.hasher.hash(password);
    const revoked = await this.deps.db.transaction(async (tx) => {
      await users.updatePasswordHash(tx, user.id, hash, true);
      await users.invalidateEmailTokens(tx, user.id, 'reset_password');
      return this.deps.sessions.revokeOthers(user.id, input.currentSessionId, 'password_changed', tx);
    });
    await this.deps.sessions.announce(revoked, user.id, 'password_changed');
    await this.credentialsChanged(user.id, 'password_changed');
    this.deps.audit.record({
      type: 'password.changed',
      outcome: 'success',
      actorId: user.id,
      subjectId: user.id,
      ...meta,
      details: { sessions_revoked: revoked.length },
    });
    this.deliver(() => this.deps.mail.passwordChanged(user.email), user.id, meta, 'mail.password_changed');
  }

  /** Always answers the same; a reset link goes out only when the account exists and is active. */
  async requestPasswordReset(rawEmail: string, meta: RequestMeta): Promise<void> {
    const email = this.validEmail(rawEmail);
    const byEmail = await this.deps.throttle.hit(this.deps.policies.resetRequestEmail, [email]);
    const byIp = await this.deps.throttle.hit(this.deps.policies.emailLinkIp, [meta.ip ?? 'unknown']);
    if (!byIp.allowed) throw rateLimited(byIp.retryAfterSeconds);
    // Per-email limit: silently drop (answering 429 would reveal nothing, but dropping also spares the inbox).
    if (!byEmail.allowed) return;
    const user = await users.findUserByEmail(this.deps.db, email);
    if (user?.status !== 'active') {
      this.deps.audit.record({
        type: 'password.reset_requested',
        outcome: 'failure',
        subjectId: user?.id ?? null,
        ...meta,
        details: { reason: user ? 'disabled' : 'unknown_email' },
      });
      return;
    }
    const token = generateToken();
    await users.insertEmailToken(this.deps.db, {
      tokenHash: hashToken(token),
      userId: user.id,
      purpose: 'reset_password',
      ttlSeconds: this.deps.settings.resetTokenSeconds,
    });
    this.deps.audit.record({
      type: 'password.reset_requested',
      outcome: 'success',
      subjectId: user.id,
      ...meta,
    });
    this.deliver(
      () => this.deps.mail.resetPassword(user.email, this.link('/account/reset-password', token)),
      user.id,
      meta,
      'mail.reset_password',
    );
  }

  /**
   * Sets a new password from a reset link. All in one transaction: if anything fails the old
   * password still works and the link stays unused. Ends every session and token.
   */
  async confirmPasswordReset(
    input: { token: string; newPassword: string },
    meta: RequestMeta,
  ): Promise<void> {
    await this.guard(this.deps.policies.emailLinkIp, [meta.ip ?? 'unknown'], meta, 'password.reset_locked');
    const tokenHash = hashToken(input.token);
    const pending = await this.deps.db.query<{ user_id: string }>(
      `SELECT user_id FROM email_tokens WHERE token_hash = $1 AND purpose = 'reset_password' AND consumed_at IS NULL AND expires_at > now()`,
      [tokenHash],
    );
    const userId = pending.rows[0]?.user_id;
    const user = userId ? await users.findUserById(this.deps.db, userId) : undefined;
    if (user?.status !== 'active') return this.badLink(meta, 'password.reset', user?.id ?? null);
    const password = await this.checkPassword(input.newPassword, user, '/newPassword');
    const hash = await this.deps.hasher.hash(password);
    const revoked = await this.deps.db.transaction(async (tx) => {
      const consumedBy = await users.consumeEmailToken(tx, tokenHash, 'reset_password');
      if (consumedBy !== user.id) return null;
      await users.updatePasswordHash(tx, user.id, hash, true);
      // The link proved the mailbox is theirs.
      await users.setEmailVerified(tx, user.id, true);
      await users.invalidateEmailTokens(tx, user.id, 'reset_password');
      return this.deps.sessions.revokeAll(user.id, 'password_reset', tx);
    });
    if (revoked === null) return this.badLink(meta, 'password.reset', user.id);
    await this.profileChanged(user.id);
    await this.deps.sessions.announce(revoked, user.id, 'password_reset');
    await this.credentialsChanged(user.id, 'password_reset');
    this.deps.audit.record({
      type: 'password.reset',
      outcome: 'success',
      subjectId: user.id,
      ...meta,
      details: { sessions_revoked: revoked.length },
    });
    this.deliver(() => this.deps.mail.passwordChanged(user.email), user.id, meta, 'mail.password_changed');
  }

  private async badLink(meta: RequestMeta, type: string, userId: string | null): Promise<never> {
    await this.deps.throttle.fail(this.deps.policies.emailLinkIp, [meta.ip ?? 'unknown']);
    this.deps.audit.record({
      type,
      outcome: 'failure',
      subjectId: userId,
      ...meta,
      details: { reason: 'invalid_link' },
    });
    throw new DomainError('validation-error', INVALID_LINK, {
      extensions: { errors: [{ pointer: '/token', detail: INVALID_LINK }] },
    });
  }

  async verifyEmail(token: string, meta: RequestMeta): Promise<void> {
    await this.guard(this.deps.policies.emailLinkIp, [meta.ip ?? 'unknown'], meta, 'email.verify_locked');
    const userId = await this.deps.db.transaction(async (tx) => {
      const id = await users.consumeEmailToken(tx, hashToken(token), 'verify_email');
      if (id) {
        await users.setEmailVerified(tx, id, true);
        await users.invalidateEmailTokens(tx, id, 'verify_email');
      }
      return id;
    });
    if (!userId) return this.badLink(meta, 'email.verified', null);
    await this.profileChanged(userId);
    this.deps.audit.record({ type: 'email.verified', outcome: 'success', subjectId: userId, ...meta });
  }

  /** Always answers the same; a new link goes out only for an existing, unverified, active account. */
  async resendVerification(rawEmail: string, meta: RequestMeta): Promise<void> {
    const email = this.validEmail(rawEmail);
    const byEmail = await this.deps.throttle.hit(this.deps.policies.resetRequestEmail, [`verify:${email}`]);
    const byIp = await this.deps.throttle.hit(this.deps.policies.emailLinkIp, [meta.ip ?? 'unknown']);
    if (!byIp.allowed) throw rateLimited(byIp.retryAfterSeconds);
    if (!byEmail.allowed) return;
    const user = await users.findUserByEmail(this.deps.db, email);
    if (!user || user.email_verified || user.status !== 'active') return;
    const token = generateToken();
    await users.insertEmailToken(this.deps.db, {
      tokenHash: hashToken(token),
      userId: user.id,
      purpose: 'verify_email',
      ttlSeconds: this.deps.settings.verifyTokenSeconds,
    });
    this.deps.audit.record({
      type: 'email.verification_sent',
      outcome: 'success',
      subjectId: user.id,
      ...meta,
    });
    this.deliver(
      () => this.deps.mail.verifyEmail(user.email, this.link('/account/verify-email', token)),
      user.id,
      meta,
      'mail.verify_email',
    );
  }

  /** Admin: disable or enable; disabling ends every session and token at once. */
  async setStatus(
    userId: string,
    status: 'active' | 'disabled',
    actorId: string,
    meta: RequestMeta,
  ): Promise<void> {
    const user = await this.getUser(userId);
    if (user.status === status) return;
    const revoked = await this.deps.db.transaction(async (tx) => {
      await users.setUserStatus(tx, userId, status);
      return status === 'disabled' ? this.deps.sessions.revokeAll(userId, 'user_disabled', tx) : [];
    });
    await this.profileChanged(userId);
    await this.deps.sessions.announce(revoked, userId, 'user_disabled');
    if (status === 'disabled') await this.credentialsChanged(userId, 'user_disabled');
    this.deps.audit.record({
      type: status === 'disabled' ? 'user.disabled' : 'user.enabled',
      outcome: 'success',
      actorId,
      subjectId: userId,
      ...meta,
    });
  }

  /** Creates a user directly (CLI, admin): already verified, password checked against the policy. */
  async createUser(input: { email: string; password: string; name?: string | null }): Promise<users.UserRow> {
    const email = this.validEmail(input.email);
    const name = input.name?.trim() || null;
    const password = await this.checkPassword(input.password, { email, name });
    const passwordHash = await this.deps.hasher.hash(password);
    const user = await this.deps.db.transaction(async (tx) => {
      const created = await users.insertUser(tx, { email, name, passwordHash, emailVerified: true });
      if (created) await this.deps.onUserCreated(tx, created.id);
      return created;
    });
    if (!user) throw new DomainError('conflict', 'A user with this email already exists');
    this.deps.audit.record({
      type: 'user.created',
      outcome: 'success',
      subjectId: user.id,
      details: { by: 'operator' },
    });
    return user;
  }
}
