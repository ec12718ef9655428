import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import type { SigningKeyService } from './signing-keys.ts';

export interface JwksRoutesOptions {
  keys: SigningKeyService;
}

// Only public members are listed: the serializer drops anything else, so a private part
// (d, p, q, ...) could never leave even if it reached the key object by mistake.
const PublicJwkSchema = Type.Object({
  kty: Type.String(),
  kid: Type.String(),
  alg: Type.Union([Type.Literal('ES256'), Type.Literal('RS256'), Type.Literal('EdDSA')]),
  use: Type.Literal('sig'),
  crv: Type.Optional(Type.String()),
  x: Type.Optional(Type.String()),
  y: Type.Optional(Type.String()),
  n: Type.Optional(Type.String()),
  e: Type.Optional(Type.String()),
});

/**
 * GET /.well-known/jwks.json: the next, current and retiring public keys. Cacheable for
 * jwksCacheSeconds, which is safe because a new key is published at least that long before
 * it signs anything, and a replaced key stays published until its last token has expired.
 */
export const jwksRoutes: FastifyPluginAsync<JwksRoutesOptions> = async (server, { keys }) => {
  server.get(
    '/.well-known/jwks.json',
    {
      schema: {
        tags: ['tokens'],
        summary: 'JSON Web Key Set: the public keys that verify Gatehouse tokens',
        response: { 200: Type.Object({ keys: Type.Array(PublicJwkSchema) }) },
      },
    },
    async (_request, reply) => {
      const jwks = await keys.jwks();
      reply.header('cache-control', `public, max-age=${keys.jwksCacheSeconds}`);
      // Public keys are public: browser-side verifiers on any origin may read them.
      reply.header('access-control-allow-origin', '*');
      reply.header('cross-origin-resource-policy', 'cross-origin');
      return jwks;
    },
  );
};
