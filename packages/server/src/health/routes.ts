import type { FastifyPluginAsync } from 'fastify';
import { Type } from 'typebox';
import { sendProblem } from '../http/problem.ts';
import type { StateStore } from '../state/state-store.ts';
import type { Database } from '../storage/database.ts';

export interface HealthRoutesOptions {
  db: Database;
  state: StateStore;
}

const READINESS_TIMEOUT_MS = 2000;

async function check(name: string, probe: () => Promise<void>): Promise<string | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), READINESS_TIMEOUT_MS);
  });
  try {
    await Promise.race([probe(), timeout]);
    return null;
  } catch {
    return name;
  } finally {
    clearTimeout(timer);
  }
}

/** /healthz: the process is alive. /readyz: it can serve, i.e. the database and state store answer. */
export const healthRoutes: FastifyPluginAsync<HealthRoutesOptions> = async (server, { db, state }) => {
  server.get(
    '/healthz',
    {
      schema: {
        tags: ['health'],
        summary: 'Liveness: the process is up',
        response: { 200: Type.Object({ status: Type.Literal('ok') }) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  server.get(
    '/readyz',
    {
      schema: {
        tags: ['health'],
        summary: 'Readiness: the database and the state store are reachable',
        response: {
          200: Type.Object({
            status: Type.Literal('ready'),
            database: Type.String(),
            stateStore: Type.String(),
          }),
        },
      },
    },
    async (_request, reply) => {
      const down = (
        await Promise.all([check('database', () => db.ping()), check('state store', () => state.ping())])
      ).filter((name): name is string => name !== null);
      if (down.length > 0) {
        reply.header('retry-after', '5');
        return sendProblem(reply, 'dependency-unavailable', `Not ready: ${down.join(' and ')} unreachable`, {
          down,
        });
      }
      return { status: 'ready' as const, database: db.kind, stateStore: state.kind };
    },
  );
};
