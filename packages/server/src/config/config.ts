import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { StartupError } from '../errors.ts';

/**
 * Gatehouse configuration. Environment variables win over the optional JSON file named by
 * GATEHOUSE_CONFIG (whose keys are the same variable names). Every problem is collected so
 * the operator sees all bad settings in one message, not one per restart.
 */
export interface Config {
  port: number;
  host: string;
  publicUrl: string;
  /** True when the public URL is https: cookies get Secure, responses get HSTS. */
  secureTransport: boolean;
  databaseUrl: string | undefined;
  /** PostgreSQL schema for Gatehouse's tables (lets several instances or test runs share one database). */
  databaseSchema: string | undefined;
  redisUrl: string | undefined;
  /** Prefix of every Redis key and channel, so several deployments can share one Redis. */
  redisKeyPrefix: string;
  dataDir: string;
  /** Master secret; undefined in embedded mode until resolveMasterSecret() fills it from the data dir. */
  secret: string | undefined;
  corsOrigins: string[];
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  bodyLimitBytes: number;
  shutdownTimeoutMs: number;
  trustProxy: boolean;
  /** Accounts and sessions. */
  requireEmailVerification: boolean;
  passwordMinLength: number;
  argon2MemoryKiB: number;
  argon2Iterations: number;
  argon2Parallelism: number;
  sessionIdleSeconds: number;
  sessionAbsoluteSeconds: number;
  sessionCacheSeconds: number;
  /** Login throttling per account+IP: failures before the temporary lock, and the lock window. */
  loginMaxFailures: number;
  loginLockSeconds: number;
  /** Refresh-token families. */
  refreshIdleSeconds: number;
  refreshAbsoluteSeconds: number;
  refreshReuseGraceSeconds: number;
  /** Lifetime of access tokens, in seconds; also how long a replaced signing key stays published. */
  accessTokenTtlSeconds: number;
  /** A signing key older than this many days gets a successor automatically. */
  keyRotationDays: number;
  /** JWKS Cache-Control max-age; a new signing key is published this long before it signs. */
  jwksCacheSeconds: number;
  /** Bearer token that grants GET /metrics on the main port; unset: only the metrics:read permission does. */
  metricsToken: string | undefined;
  /** Separate port serving /metrics without authentication (bind it privately); unset: none. */
  metricsPort: number | undefined;
  /** smtp:// or smtps:// URL of the mail server; unset: mail goes to the dev outbox table (`gatehouse mail`). */
  smtpUrl: string | undefined;
  /** From address of outgoing mail. */
  mailFrom: string;
}

export type Environment = Record<string, string | undefined>;

interface Setting<K extends keyof Config> {
  key: K;
  env: string;
  expected: string;
  parse: (raw: string | undefined, env: Environment) => Config[K];
}

class BadSetting extends Error {}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function integer(min: number, max: number, fallback: number) {
  return (raw: string | undefined): number => {
    if (raw === undefined || raw === '') return fallback;
    if (!/^\d+$/.test(raw)) throw new BadSetting();
    const value = Number(raw);
    if (value < min || value > max) throw new BadSetting();
    return value;
  };
}

function url(protocols: string[]) {
  return (raw: string): string => {
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      throw new BadSetting();
    }
    if (!protocols.includes(parsed.protocol)) throw new BadSetting();
    return raw;
  };
}

function optional<T>(parse: (raw: string) => T) {
  return (raw: string | undefined): T | undefined =>
    raw === undefined || raw === '' ? undefined : parse(raw);
}

function boolean(fallback: boolean) {
  return (raw: string | undefined): boolean => {
    if (raw === undefined || raw === '') return fallback;
    if (['1', 'true', 'yes'].includes(raw.toLowerCase())) return true;
    if (['0', 'false', 'no'].includes(raw.toLowerCase())) return false;
    throw new BadSetting();
  };
}

const MIN_SECRET_LENGTH = 32;
/** Settings whose values never appear in an error message (SMTP_URL may carry a password). */
/** Connection URLs may embed a password: never echo it in a configuration error. */
function withoutUrlPassword(raw: string): string {
  return raw.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@/]*@/i, '$1***@');
}

const HIDDEN_SETTINGS = new Set(['GATEHOUSE_SECRET', 'GATEHOUSE_METRICS_TOKEN', 'SMTP_URL']);

const settings: { [K in keyof Config]: Setting<K> }[keyof Config][] = [
  { key: 'port', env: 'PORT', expected: 'an integer from 0 to 65535', parse: integer(0, 65535, 4000) },
  {
    key: 'host',
    env: 'HOST',
    expected: 'an interface address such as 127.0.0.1 or 0.0.0.0',
    parse: (raw) => raw || '127.0.0.1',
  },
  {
    key: 'publicUrl',
    env: 'GATEHOUSE_PUBLIC_URL',
    expected: 'an http(s) URL without query or fragment, e.g. https://auth.example.com',
    parse: (raw) => {
      const value = raw || 'http://localhost:4000';
      url(['http:', 'https:'])(value);
      const parsed = new URL(value);
      if (parsed.search || parsed.hash || parsed.username || parsed.password) throw new BadSetting();
      return value.replace(/\/+$/, '');
    },
  },
  {
    key: 'secureTransport',
    env: 'GATEHOUSE_PUBLIC_URL',
    expected: '',
    parse: (raw) => (raw ?? '').startsWith('https:'),
  },
  {
    key: 'databaseUrl',
    env: 'DATABASE_URL',
    expected: 'a postgres:// or postgresql:// URL (unset: embedded PGlite)',
    parse: optional(url(['postgres:', 'postgresql:'])),
  },
  {
    key: 'databaseSchema',
    env: 'GATEHOUSE_DATABASE_SCHEMA',
    expected: 'a lower-case SQL identifier such as gatehouse (unset: public)',
    parse: optional((raw) => {
      if (!/^[a-z_][a-z0-9_]{0,62}$/.test(raw)) throw new BadSetting();
      return raw;
    }),
  },
  {
    key: 'redisUrl',
    env: 'REDIS_URL',
    expected:
      'a redis:// or rediss:// URL, several comma-separated hosts for Redis Cluster (unset: in-memory)',
    parse: optional((raw) => url(['redis:', 'rediss:'])(raw.split(',')[0] as string) && raw),
  },
  {
    key: 'redisKeyPrefix',
    env: 'GATEHOUSE_REDIS_PREFIX',
    expected: 'up to 64 characters of letters, digits, and : _ - .',
    parse: (raw) => {
      const value = raw || 'gh:';
      if (!/^[A-Za-z0-9:_.-]{1,64}$/.test(value)) throw new BadSetting();
      return value;
    },
  },
  {
    key: 'dataDir',
    env: 'GATEHOUSE_DATA_DIR',
    expected: 'a directory path',
    parse: (raw) => {
      const value = raw || './.gatehouse';
      if (value.includes('\0')) throw new BadSetting();
      return isAbsolute(value) ? value : resolve(value);
    },
  },
  {
    key: 'secret',
    env: 'GATEHOUSE_SECRET',
    expected: `at least ${MIN_SECRET_LENGTH} characters of high-entropy text (e.g. \`openssl rand -base64 48\`); required when DATABASE_URL is set`,
    parse: (raw, env) => {
      if (raw === undefined || raw === '') {
        if (env.DATABASE_URL) throw new BadSetting();
        return undefined;
      }
      if (raw.length < MIN_SECRET_LENGTH) throw new BadSetting();
      return raw;
    },
  },
  {
    key: 'corsOrigins',
    env: 'GATEHOUSE_CORS_ORIGINS',
    expected: 'a comma-separated list of origins such as https://app.example.com (no paths)',
    parse: (raw) => {
      if (!raw) return [];
      return raw.split(',').map((entry) => {
        const origin = entry.trim();
        const parsed = new URL(url(['http:', 'https:'])(origin));
        if (parsed.origin !== origin.replace(/\/$/, '')) throw new BadSetting();
        return parsed.origin;
      });
    },
  },
  {
    key: 'logLevel',
    env: 'GATEHOUSE_LOG_LEVEL',
    expected: LOG_LEVELS.join(', '),
    parse: (raw) => {
      const value = (raw || 'info') as Config['logLevel'];
      if (!LOG_LEVELS.includes(value)) throw new BadSetting();
      return value;
    },
  },
  {
    key: 'bodyLimitBytes',
    env: 'GATEHOUSE_BODY_LIMIT',
    expected: 'a byte count from 1024 to 10485760',
    parse: integer(1024, 10 * 1024 * 1024, 100 * 1024),
  },
  {
    key: 'shutdownTimeoutMs',
    env: 'GATEHOUSE_SHUTDOWN_TIMEOUT_MS',
    expected: 'milliseconds from 0 to 600000',
    parse: integer(0, 600_000, 10_000),
  },
  { key: 'trustProxy', env: 'GATEHOUSE_TRUST_PROXY', expected: 'true or false', parse: boolean(false) },
  {
    key: 'requireEmailVerification',
    env: 'GATEHOUSE_REQUIRE_EMAIL_VERIFICATION',
    expected: 'true or false',
    parse: boolean(false),
  },
  {
    key: 'passwordMinLength',
    env: 'GATEHOUSE_PASSWORD_MIN_LENGTH',
    expected: 'an integer from 8 to 64 (NIST SP 800-63B-4: 15 when the password is the only factor)',
    parse: integer(8, 64, 15),
  },
  {
    key: 'argon2MemoryKiB',
    env: 'GATEHOUSE_ARGON2_MEMORY_KIB',
    expected: 'KiB from 8192 to 1048576',
    parse: integer(8192, 1_048_576, 19_456),
  },
  {
    key: 'argon2Iterations',
    env: 'GATEHOUSE_ARGON2_ITERATIONS',
    expected: 'an integer from 1 to 20',
    parse: integer(1, 20, 2),
  },
  {
    key: 'argon2Parallelism',
    env: 'GATEHOUSE_ARGON2_PARALLELISM',
    expected: 'an integer from 1 to 16',
    parse: integer(1, 16, 1),
  },
  {
    key: 'sessionIdleSeconds',
    env: 'GATEHOUSE_SESSION_IDLE_SECONDS',
    expected: 'seconds from 60 to 31536000',
    parse: integer(60, 31_536_000, 86_400),
  },
  {
    key: 'sessionAbsoluteSeconds',
    env: 'GATEHOUSE_SESSION_ABSOLUTE_SECONDS',
    expected: 'seconds from 60 to 31536000',
    parse: integer(60, 31_536_000, 30 * 86_400),
  },
  {
    key: 'sessionCacheSeconds',
    env: 'GATEHOUSE_SESSION_CACHE_SECONDS',
    expected:
      'seconds from 0 to 60 (how long a node may serve a validated session from memory; revocations are pushed at once)',
    parse: integer(0, 60, 10),
  },
  {
    key: 'loginMaxFailures',
    env: 'GATEHOUSE_LOGIN_MAX_FAILURES',
    expected: 'an integer from 3 to 100',
    parse: integer(3, 100, 10),
  },
  {
    key: 'loginLockSeconds',
    env: 'GATEHOUSE_LOGIN_LOCK_SECONDS',
    expected: 'seconds from 1 to 86400',
    parse: integer(1, 86_400, 900),
  },
  {
    key: 'refreshIdleSeconds',
    env: 'GATEHOUSE_REFRESH_IDLE_SECONDS',
    expected: 'seconds from 60 to 31536000',
    parse: integer(60, 31_536_000, 7 * 86_400),
  },
  {
    key: 'refreshAbsoluteSeconds',
    env: 'GATEHOUSE_REFRESH_ABSOLUTE_SECONDS',
    expected: 'seconds from 60 to 31536000',
    parse: integer(60, 31_536_000, 30 * 86_400),
  },
  {
    key: 'refreshReuseGraceSeconds',
    env: 'GATEHOUSE_REFRESH_REUSE_GRACE_SECONDS',
    expected: 'seconds from 0 to 60',
    parse: integer(0, 60, 0),
  },
  {
    key: 'accessTokenTtlSeconds',
    env: 'GATEHOUSE_ACCESS_TOKEN_TTL',
    expected: 'seconds from 60 to 86400',
    parse: integer(60, 86_400, 900),
  },
  {
    key: 'keyRotationDays',
    env: 'GATEHOUSE_KEY_ROTATION_DAYS',
    expected: 'days from 1 to 3650',
    parse: integer(1, 3650, 30),
  },
  {
    key: 'jwksCacheSeconds',
    env: 'GATEHOUSE_JWKS_CACHE_SECONDS',
    expected: 'seconds from 0 to 86400',
    parse: integer(0, 86_400, 300),
  },
  {
    key: 'metricsToken',
    env: 'GATEHOUSE_METRICS_TOKEN',
    expected: `at least ${MIN_SECRET_LENGTH} characters of high-entropy text (unset: /metrics needs the metrics:read permission)`,
    parse: optional((raw) => {
      if (raw.length < MIN_SECRET_LENGTH) throw new BadSetting();
      return raw;
    }),
  },
  {
    key: 'metricsPort',
    env: 'GATEHOUSE_METRICS_PORT',
    expected: 'an integer from 0 to 65535 (unset: no separate metrics port)',
    parse: optional(integer(0, 65535, 0)),
  },
  {
    key: 'smtpUrl',
    env: 'SMTP_URL',
    expected:
      'an smtp:// or smtps:// URL such as smtps://user:password@mail.example.com:465 (unset: mail goes to the dev outbox)',
    parse: optional(url(['smtp:', 'smtps:'])),
  },
  {
    key: 'mailFrom',
    env: 'GATEHOUSE_MAIL_FROM',
    expected: 'a sender such as no-reply@example.com or "Gatehouse <no-reply@example.com>"',
    parse: (raw) => {
      const value = raw || 'Gatehouse <no-reply@localhost>';
      if (!/^([^\r\n<>@]*<[^\s<>@]+@[^\s<>@]+>|[^\s<>@]+@[^\s<>@]+)$/.test(value)) throw new BadSetting();
      return value;
    },
  },
];

function readConfigFile(path: string): Environment {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new StartupError(
      `Cannot read the configuration file ${path} (GATEHOUSE_CONFIG): ${(error as Error).message}`,
    );
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new StartupError(`The configuration file ${path} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new StartupError(
      `The configuration file ${path} must hold a JSON object of setting names to values`,
    );
  }
  const known = new Set(settings.map((s) => s.env));
  const out: Environment = {};
  const unknown: string[] = [];
  for (const [name, value] of Object.entries(data)) {
    if (!known.has(name)) unknown.push(name);
    else out[name] = typeof value === 'string' ? value : JSON.stringify(value);
  }
  if (unknown.length > 0) {
    throw new StartupError(
      `The configuration file ${path} has unknown settings: ${unknown.join(', ')}. Known: ${[...known].join(', ')}`,
    );
  }
  return out;
}

/** Reads and validates the configuration; throws one StartupError naming every bad setting. */
export function loadConfig(env: Environment = process.env): Config {
  const fromFile = env.GATEHOUSE_CONFIG ? readConfigFile(env.GATEHOUSE_CONFIG) : {};
  const merged: Environment = { ...fromFile };
  for (const [name, value] of Object.entries(env)) if (value !== undefined) merged[name] = value;

  const problems: string[] = [];
  const config: Partial<Record<keyof Config, unknown>> = {};
  for (const setting of settings) {
    const raw = merged[setting.env];
    try {
      config[setting.key] = setting.parse(raw, merged);
    } catch (error) {
      if (!(error instanceof BadSetting) && !(error instanceof TypeError)) throw error;
      const shown = HIDDEN_SETTINGS.has(setting.env)
        ? raw
          ? '(hidden)'
          : '(unset)'
        : JSON.stringify(raw === undefined ? null : withoutUrlPassword(raw));
      problems.push(`  ${setting.env}=${shown}: expected ${setting.expected}`);
    }
  }
  if (problems.length > 0) {
    throw new StartupError(`Invalid configuration (${problems.length} setting(s)):\n${problems.join('\n')}`);
  }
  return config as Config;
}
