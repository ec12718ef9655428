import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { type FastifyBaseLogger, type FastifyReply, type FastifyRequest, LogController } from 'fastify';
import { type Logger, redactUrl } from '../logging/logger.ts';

const CALLER_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Keeps a caller's X-Request-Id when it is a sane token (log correlation across services), else mints one. */
export function requestId(request: IncomingMessage): string {
  const given = request.headers['x-request-id'];
  return typeof given === 'string' && CALLER_REQUEST_ID.test(given) ? given : randomUUID();
}

/**
 * One access-log line per request instead of Fastify's two, with credentials stripped from the
 * URL. Written through an unredacted sibling logger: every field here is built by us.
 */
export class AccessLogController extends LogController {
  private readonly accessLog: Logger;

  constructor(accessLog: Logger) {
    super({ requestIdLogLabel: 'request_id' });
    this.accessLog = accessLog;
  }

  override incomingRequest(): void {}

  override requestCompleted(error: Error | null, request: FastifyRequest, reply: FastifyReply): void {
    const entry = {
      request_id: request.id,
      method: request.method,
      url: redactUrl(request.url),
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime * 10) / 10,
      ip: request.ip,
    };
    // An error object may carry anything: it goes through the redacting request logger.
    if (error) reply.log.error({ ...entry, err: error }, 'request');
    else this.accessLog.info(entry, 'request');
  }
}

/**
 * Fastify makes a child logger per request; with redaction configured, pino's child() costs
 * ~3.4 µs (measured), on every request, though most requests never log through it (the access
 * log has its own logger). This hands out a stand-in that creates the real child on first use.
 */
export function lazyChildLogger(
  logger: FastifyBaseLogger,
  bindings: Record<string, unknown>,
  options: Record<string, unknown>,
): FastifyBaseLogger {
  let child: FastifyBaseLogger | undefined;
  const real = () => {
    child ??= logger.child(bindings, options);
    return child;
  };
  return {
    get level() {
      return child ? child.level : logger.level;
    },
    set level(value: string) {
      real().level = value;
    },
    fatal: (...args: unknown[]) => (real().fatal as (...a: unknown[]) => void)(...args),
    error: (...args: unknown[]) => (real().error as (...a: unknown[]) => void)(...args),
    warn: (...args: unknown[]) => (real().warn as (...a: unknown[]) => void)(...args),
    info: (...args: unknown[]) => (real().info as (...a: unknown[]) => void)(...args),
    debug: (...args: unknown[]) => (real().debug as (...a: unknown[]) => void)(...args),
    trace: (...args: unknown[]) => (real().trace as (...a: unknown[]) => void)(...args),
    silent: () => {},
    child: (childBindings: Record<string, unknown>, childOptions?: Record<string, unknown>) =>
      real().child(childBindings, childOptions),
  } as FastifyBaseLogger;
}
