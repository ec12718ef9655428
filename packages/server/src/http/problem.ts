import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { DependencyUnavailableError, DomainError, type FieldProblem, type ProblemKind } from '../errors.ts';

/** Stable problem type URIs: clients match on these, so they never change once published. */
export const PROBLEM_BASE = 'https://gatehouse.dev/problems/';

const KINDS: Record<ProblemKind, { status: number; title: string }> = {
  'validation-error': { status: 400, title: 'The request has invalid fields' },
  'malformed-request': { status: 400, title: 'The request body cannot be parsed' },
  'unsupported-media-type': { status: 415, title: 'Unsupported content type' },
  'payload-too-large': { status: 413, title: 'The request body is too large' },
  'not-found': { status: 404, title: 'Not found' },
  'method-not-allowed': { status: 405, title: 'Method not allowed' },
  unauthorized: { status: 401, title: 'Authentication required' },
  forbidden: { status: 403, title: 'Forbidden' },
  conflict: { status: 409, title: 'Conflict' },
  'invalid-grant': { status: 400, title: 'The refresh token is invalid, expired or revoked' },
  'rate-limited': { status: 429, title: 'Too many requests' },
  'dependency-unavailable': { status: 503, title: 'Service temporarily unavailable' },
  'internal-error': { status: 500, title: 'Internal server error' },
};

export interface ProblemDocument {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
  [extension: string]: unknown;
}

export function problemDocument(
  kind: ProblemKind,
  detail?: string,
  extensions: Record<string, unknown> = {},
): ProblemDocument {
  const { status, title } = KINDS[kind];
  return { type: PROBLEM_BASE + kind, title, status, ...(detail ? { detail } : {}), ...extensions };
}

export function sendProblem(
  reply: FastifyReply,
  kind: ProblemKind,
  detail?: string,
  extensions: Record<string, unknown> = {},
): FastifyReply {
  const body = problemDocument(kind, detail, { ...extensions, request_id: reply.request.id });
  return reply.code(body.status).type('application/problem+json').send(body);
}

/** Seconds a client should wait before retrying when a dependency is down. */
const DEPENDENCY_RETRY_AFTER_SECONDS = 5;

interface AjvLikeError {
  instancePath?: string;
  keyword?: string;
  message?: string;
  params?: Record<string, unknown>;
}

function fieldProblems(error: FastifyError): FieldProblem[] {
  const context = (error as { validationContext?: string }).validationContext ?? 'body';
  return ((error.validation ?? []) as AjvLikeError[]).map((issue) => {
    let pointer = issue.instancePath ?? '';
    let detail = issue.message ?? 'is invalid';
    if (issue.keyword === 'additionalProperties' && issue.params?.additionalProperty) {
      pointer = `${pointer}/${String(issue.params.additionalProperty)}`;
      detail = 'is not an accepted field';
    } else if (issue.keyword === 'required' && issue.params?.missingProperty) {
      pointer = `${pointer}/${String(issue.params.missingProperty)}`;
      detail = 'is required';
    }
    return { pointer: `${context === 'body' ? '' : `${context}:`}${pointer || '/'}`, detail };
  });
}

/** The single error handler: every failure leaves as problem+json, never with a stack trace. */
export function handleError(
  error: FastifyError | Error,
  request: FastifyRequest,
  reply: FastifyReply,
): FastifyReply {
  if (error instanceof DomainError) {
    reply.headers(error.headers);
    return sendProblem(reply, error.kind, error.detail, error.extensions);
  }
  if (error instanceof DependencyUnavailableError) {
    request.log.warn({ dependency: error.dependency, err: error.cause }, 'dependency unavailable');
    reply.header('retry-after', String(DEPENDENCY_RETRY_AFTER_SECONDS));
    return sendProblem(
      reply,
      'dependency-unavailable',
      `The ${error.dependency} is unavailable; retry later.`,
      {
        dependency: error.dependency,
      },
    );
  }
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) {
    const errors = fieldProblems(fastifyError);
    return sendProblem(reply, 'validation-error', `${errors.length} field(s) failed validation`, { errors });
  }
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return sendProblem(reply, 'payload-too-large', fastifyError.message);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return sendProblem(reply, 'unsupported-media-type', 'Send the body as application/json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return sendProblem(reply, 'malformed-request', 'The JSON body is empty');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return sendProblem(reply, 'malformed-request', 'The body is not valid JSON');
    case 'FST_ERR_BAD_URL':
    case 'FST_ERR_ASYNC_CONSTRAINT':
      return sendProblem(reply, 'malformed-request', 'The request URL is malformed');
  }
  if (error instanceof SyntaxError || fastifyError.statusCode === 400) {
    return sendProblem(reply, 'malformed-request', 'The request cannot be parsed');
  }
  if (fastifyError.statusCode === 413) return sendProblem(reply, 'payload-too-large');
  if (fastifyError.statusCode === 415) return sendProblem(reply, 'unsupported-media-type');
  request.log.error({ err: error }, 'unhandled error');
  return sendProblem(
    reply,
    'internal-error',
    'An unexpected error occurred; quote the request id when reporting it',
  );
}
