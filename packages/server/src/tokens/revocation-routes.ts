import type { FastifyPluginAsync, preHandlerAsyncHookHandler } from 'fastify';
import { Type } from 'typebox';
import type { RevocationEvent, RevocationService } from './revocation.ts';

export interface RevocationRoutesOptions {
  service: Pick<RevocationService, 'listSince'>;
  /** Supplied by the caller: a preHandler that refuses requests lacking the permission (401/403 problem+json). */
  requirePermission: (permission: string) => preHandlerAsyncHookHandler;
}

export const REVOCATIONS_READ_PERMISSION = 'revocations:read';
const DEFAULT_LIMIT = 500;
const MAX_LIMIT = 1000;

const EventSchema = Type.Object(
  {
    id: Type.Integer({ description: 'Event id; pass the last one seen as `since`' }),
    kind: Type.Union([Type.Literal('token'), Type.Literal('user')], {
      description:
        '`token`: the access token `jti` is revoked until `exp`. `user`: every token of `sub` whose `ver` is below `ver` is revoked.',
    }),
    jti: Type.Optional(Type.String()),
    sub: Type.Optional(Type.String()),
    ver: Type.Optional(Type.Integer()),
    exp: Type.Optional(Type.Integer({ description: 'Epoch seconds' })),
  },
  { additionalProperties: false },
);

interface FeedQuery {
  since: number;
  limit: number;
}

/**
 * GET /v1/revocations: the revocation feed for verifiers that cannot subscribe to the state
 * store. Poll with `since` = the previous `next`; ids follow commit order, so nothing is skipped.
 * A verifier starting from 0 gets every revocation that still matters.
 */
export const revocationRoutes: FastifyPluginAsync<RevocationRoutesOptions> = async (
  server,
  { service, requirePermission },
) => {
  server.get<{ Querystring: FeedQuery }>(
    '/v1/revocations',
    {
      preHandler: requirePermission(REVOCATIONS_READ_PERMISSION),
      schema: {
        tags: ['tokens'],
        summary: 'Revocation events since an event id',
        description:
          'Access-token revocations (single tokens by jti, and per-user version bumps) in event order. Requires the `revocations:read` permission.',
        security: [{ bearer: [] }],
        querystring: Type.Object(
          {
            since: Type.Integer({ minimum: 0, default: 0, description: 'Return events after this id' }),
            limit: Type.Integer({ minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT }),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object(
            {
              events: Type.Array(EventSchema),
              next: Type.Integer({ description: 'The `since` for the next poll' }),
            },
            { additionalProperties: false },
          ),
        },
      },
    },
    async (request) => {
      const { since, limit } = request.query;
      const events: RevocationEvent[] = await service.listSince(since, limit);
      return { events, next: events.at(-1)?.id ?? since };
    },
  );
};
