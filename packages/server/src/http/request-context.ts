import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { type FastifyReply, type FastifyRequest, LogController } from 'fastify';
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
