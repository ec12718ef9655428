import pino, { type Logger, type LoggerOptions } from 'pino';

/**
 * Redaction list: anything that could carry a credential. Paths cover request headers,
 * response headers and the bodies or objects domains may log by mistake.
 */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  '*.password',
  '*.currentPassword',
  '*.newPassword',
  '*.token',
  '*.access_token',
  '*.refresh_token',
  '*.id_token',
  '*.client_secret',
  '*.code',
  '*.code_verifier',
  '*.secret',
  '*.apiKey',
  '*.api_key',
  'password',
  'token',
  'secret',
  'client_secret',
];

/** Query parameters whose values never reach a log line. */
const SENSITIVE_QUERY =
  /([?&](?:token|code|access_token|refresh_token|id_token|client_secret|password|api_key|state)=)[^&#]*/gi;

export function redactUrl(url: string): string {
  return url.replace(SENSITIVE_QUERY, '$1[Redacted]');
}

export function loggerOptions(level: LoggerOptions['level']): LoggerOptions {
  return {
    level,
    redact: { paths: REDACTED_PATHS, censor: '[Redacted]' },
    base: { service: 'gatehouse' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
}

/**
 * Without a destination, logs go to stdout through a buffered, asynchronous writer: one
 * write(2) per line measured at a fifth of the request cost of /healthz. Call flushLogs()
 * before the process exits so nothing buffered is lost.
 */
export function createLogger(level: LoggerOptions['level'], destination?: pino.DestinationStream): Logger {
  return pino(
    loggerOptions(level),
    destination ?? pino.destination({ dest: 1, sync: false, minLength: 4096 }),
  );
}

/** Writes out whatever the logger still buffers (no-op for unbuffered destinations). */
export function flushLogs(logger: Logger): void {
  try {
    const stream = (logger as unknown as Record<symbol, { flushSync?: () => void }>)[pino.symbols.streamSym];
    stream?.flushSync?.();
  } catch {
    // A stream that is not ready or already closed has nothing to flush.
  }
}

/**
 * A logger on the same stream without the redaction pass, for lines whose every field we
 * build ourselves (the access log: method, redacted URL, status, timing, IP). Redaction with
 * wildcard paths walks each logged object and measured ~28 µs per request on the access log.
 */
export function createUnredactedSibling(logger: Logger): Logger {
  const { redact: _redact, ...options } = loggerOptions(logger.level as LoggerOptions['level']);
  const stream = (logger as unknown as Record<symbol, pino.DestinationStream>)[pino.symbols.streamSym];
  return stream ? pino(options, stream) : pino(options);
}

export type { Logger };
