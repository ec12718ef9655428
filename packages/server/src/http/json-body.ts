import { isUtf8 } from 'node:buffer';
import type { FastifyInstance } from 'fastify';
import sjson from 'secure-json-parse';
import { DomainError } from '../errors.ts';

class BadText extends Error {}

/** Strings with NUL characters or lone surrogates have no business in any field we accept. */
function reviver(_key: string, value: unknown): unknown {
  if (typeof value === 'string' && (value.includes('\u0000') || !value.isWellFormed())) throw new BadText();
  return value;
}

/**
 * JSON bodies: bytes must be valid UTF-8 (no silent U+FFFD substitution), strings free of NUL
 * and lone surrogates, and no prototype-poisoning keys (secure-json-parse, as Fastify's own).
 */
export function registerJsonBodyParser(server: FastifyInstance): void {
  server.removeContentTypeParser('application/json');
  server.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => {
    const bytes = body as Buffer;
    if (bytes.length === 0)
      return done(new DomainError('malformed-request', 'The JSON body is empty'), undefined);
    if (!isUtf8(bytes))
      return done(new DomainError('malformed-request', 'The body is not valid UTF-8'), undefined);
    try {
      done(
        null,
        sjson.parse(bytes.toString('utf8'), reviver, { protoAction: 'error', constructorAction: 'error' }),
      );
    } catch (error) {
      const detail =
        error instanceof BadText
          ? 'Text fields must not contain NUL characters or unpaired surrogates'
          : 'The body is not valid JSON';
      done(new DomainError('malformed-request', detail), undefined);
    }
  });
}
