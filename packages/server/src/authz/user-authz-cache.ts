import { BroadcastCache } from '../state/broadcast-cache.ts';
import type { StateStore } from '../state/state-store.ts';
import type { AuthzService, UserAuthz } from './authz-service.ts';

const CHANNEL = 'authz.changed';

interface Cached {
  authz: UserAuthz;
  /** The user's token version this process knew when the entry was read. */
  version: number;
}

/**
 * Users' roles and permissions for cookie-authenticated requests (and the current roles that
 * `GET /v1/me` reports to token callers), which would otherwise read them from the database on
 * every request. Coherent in three ways: AuthzService drops what
 * it changes here and on every node (BroadcastCache); an entry read under an older token
 * version is refused, so a permission removal (which bumps the version, pushed to every node
 * with the revocation events) takes effect with the same reach as for access tokens; and the
 * TTL (GATEHOUSE_SESSION_CACHE_SECONDS, as for sessions) bounds the rest.
 *
 * Token issuance does not use it: every grant and refresh reads the database.
 */
export class UserAuthzCache {
  private readonly authz: AuthzService;
  private readonly versionOf: (userId: string) => number;
  private readonly cache: BroadcastCache<Cached>;

  constructor(
    authz: AuthzService,
    state: StateStore,
    options: { ttlMs: number; versionOf: (userId: string) => number },
  ) {
    this.authz = authz;
    this.versionOf = options.versionOf;
    this.cache = new BroadcastCache(state, CHANNEL, { ttlMs: options.ttlMs });
  }

  start(): Promise<void> {
    return this.cache.start();
  }

  stop(): Promise<void> {
    return this.cache.stop();
  }

  async get(userId: string): Promise<UserAuthz> {
    const cached = await this.cache.get(
      userId,
      async () => {
        const version = this.versionOf(userId);
        return { authz: await this.authz.getUserAuthz(userId), version };
      },
      (entry) => entry.version === this.versionOf(userId),
    );
    return cached.authz;
  }

  /** What changed: these users, or (null) every holder of a role. */
  invalidate(userIds: string[] | null): Promise<void> {
    return this.cache.invalidate(userIds);
  }
}
