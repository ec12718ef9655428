/**
 * Errors the domains throw. They carry no HTTP types; src/http/problem.ts maps each to an
 * RFC 9457 problem document with a stable `type` URI.
 */
export type Dependency = 'database' | 'state store';

/** A backing service (database, state store) cannot be reached right now. Maps to 503. */
export class DependencyUnavailableError extends Error {
  readonly dependency: Dependency;
  constructor(dependency: Dependency, options?: { cause?: unknown }) {
    super(`The ${dependency} is unavailable`, options);
    this.name = 'DependencyUnavailableError';
    this.dependency = dependency;
  }
}

/** Raised at start-up for an unusable configuration or data directory; the CLI prints it and exits. */
export class StartupError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StartupError';
  }
}

/** Error kinds the API reports; src/http/problem.ts gives each a status, title and type URI. */
export type ProblemKind =
  | 'validation-error'
  | 'malformed-request'
  | 'unsupported-media-type'
  | 'payload-too-large'
  | 'not-found'
  | 'method-not-allowed'
  | 'unauthorized'
  | 'forbidden'
  | 'conflict'
  | 'invalid-grant'
  | 'rate-limited'
  | 'dependency-unavailable'
  | 'internal-error';

export interface FieldProblem {
  /** JSON pointer to the offending field, e.g. /email. */
  pointer: string;
  detail: string;
}

/** A failure a domain reports to its caller; carries an optional safe detail and extension members. */
export class DomainError extends Error {
  readonly kind: ProblemKind;
  readonly detail: string | undefined;
  readonly extensions: Record<string, unknown>;
  readonly headers: Record<string, string>;
  constructor(
    kind: ProblemKind,
    detail?: string,
    options: { extensions?: Record<string, unknown>; headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(detail ?? kind, { cause: options.cause });
    this.name = 'DomainError';
    this.kind = kind;
    this.detail = detail;
    this.extensions = options.extensions ?? {};
    this.headers = options.headers ?? {};
  }
}
