import { createHash } from 'node:crypto';
import type { StateStore } from '../state/state-store.ts';

/**
 * Failure-driven throttling for guessable secrets (passwords, reset and verify links).
 * Each key counts failures in a window. Past `delayAfter` failures every further attempt must
 * wait a growing delay (1 s, 2 s, 4 s ... capped); at `lockAfter` the key is locked until its
 * window ends. Keys and windows are chosen by the caller so that a lock is always temporary
 * and bound to the attacker's own IP (account+IP), never to an account alone.
 */
export interface ThrottlePolicy {
  name: string;
  windowSeconds: number;
  delayAfter: number;
  lockAfter: number;
  maxDelaySeconds: number;
}

export interface ThrottleVerdict {
  allowed: boolean;
  /** Seconds until the next attempt is accepted, when not allowed. */
  retryAfterSeconds: number;
  /** Failures counted in the current window: 0 means there is nothing to reset. */
  failures: number;
}

function keyOf(policy: ThrottlePolicy, parts: string[]): string {
  // Hash the parts: keys must not carry raw emails into Redis.
  const digest = createHash('sha256').update(parts.join('\u0000')).digest('base64url').slice(0, 32);
  return `throttle:${policy.name}:${digest}`;
}

export class AttemptThrottle {
  private readonly state: StateStore;

  constructor(state: StateStore) {
    this.state = state;
  }

  /** May an attempt be made now? Does not count anything. */
  async check(policy: ThrottlePolicy, parts: string[]): Promise<ThrottleVerdict> {
    const key = keyOf(policy, parts);
    const [failures, nextAt] = await Promise.all([this.state.get(`${key}:n`), this.state.get(`${key}:next`)]);
    const count = Number(failures ?? 0);
    if (count >= policy.lockAfter) {
      const ttl = (await this.state.ttl(`${key}:n`)) ?? 0;
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(ttl / 1000)), failures: count };
    }
    const wait = Number(nextAt ?? 0) - Date.now();
    if (wait > 0) return { allowed: false, retryAfterSeconds: Math.ceil(wait / 1000), failures: count };
    return { allowed: true, retryAfterSeconds: 0, failures: count };
  }

  /** Counts a failure and schedules the delay the next attempt must wait. */
  async fail(policy: ThrottlePolicy, parts: string[]): Promise<void> {
    const key = keyOf(policy, parts);
    const { value, ttlMs } = await this.state.increment(`${key}:n`, policy.windowSeconds * 1000);
    if (value >= policy.delayAfter && value < policy.lockAfter) {
      const delaySeconds = Math.min(policy.maxDelaySeconds, 2 ** (value - policy.delayAfter));
      await this.state.set(
        `${key}:next`,
        String(Date.now() + delaySeconds * 1000),
        Math.min(ttlMs, delaySeconds * 1000) || 1,
      );
    }
  }

  /** Counts an attempt that is limited whatever its outcome (registrations, reset requests). */
  async hit(policy: ThrottlePolicy, parts: string[]): Promise<ThrottleVerdict> {
    const verdict = await this.check(policy, parts);
    if (verdict.allowed) await this.fail(policy, parts);
    return verdict;
  }

  async reset(policy: ThrottlePolicy, parts: string[]): Promise<void> {
    const key = keyOf(policy, parts);
    await Promise.all([this.state.delete(`${key}:n`), this.state.delete(`${key}:next`)]);
  }
}

export interface AccountPolicies {
  loginAccountIp: ThrottlePolicy;
  loginIp: ThrottlePolicy;
  register: ThrottlePolicy;
  resetRequestEmail: ThrottlePolicy;
  emailLinkIp: ThrottlePolicy;
}

/**
 * The policies of the account endpoints. Wrong passwords for one account from one IP: delays
 * from the 3rd failure, a lock at `maxFailures` for `lockSeconds`. From one IP across accounts
 * (credential stuffing) the limits are ten times higher.
 */
export function accountPolicies(maxFailures = 10, lockSeconds = 900): AccountPolicies {
  return {
    loginAccountIp: {
      name: 'login-acct-ip',
      windowSeconds: lockSeconds,
      delayAfter: 3,
      lockAfter: maxFailures,
      maxDelaySeconds: 60,
    },
    loginIp: {
      name: 'login-ip',
      windowSeconds: lockSeconds,
      delayAfter: maxFailures * 5,
      lockAfter: maxFailures * 10,
      maxDelaySeconds: 30,
    },
    register: {
      name: 'register-ip',
      windowSeconds: 3600,
      delayAfter: 10,
      lockAfter: 20,
      maxDelaySeconds: 30,
    },
    resetRequestEmail: {
      name: 'reset-email',
      windowSeconds: 3600,
      delayAfter: 3,
      lockAfter: 5,
      maxDelaySeconds: 60,
    },
    emailLinkIp: {
      name: 'email-link-ip',
      windowSeconds: 900,
      delayAfter: 10,
      lockAfter: 20,
      maxDelaySeconds: 30,
    },
  };
}
