import { createGatehouse } from '../app.ts';
import { roleHasHolders } from '../authz/authz-store.ts';
import { loadConfig } from '../config/config.ts';
import { flushLogs } from '../logging/logger.ts';
import type { Command } from './commands.ts';
import { releaseStartupMemory } from './startup-memory.ts';

/**
 * When start-up's memory is handed back (releaseStartupMemory). With PGlite, the engine keeps
 * optimising its WebAssembly in the background for a while after the first queries (RSS passed
 * 330 MB half a second after listening); collecting at once returned less (169-175 MB) than
 * collecting two seconds later (160-163 MB).
 */
const STARTUP_SETTLE_MS = 2000;

export const startCommand: Command = {
  name: 'start',
  summary: 'Run the Gatehouse server (migrates the database first)',
  usage: 'gatehouse start',
  async run() {
    const config = loadConfig();
    const gatehouse = await createGatehouse(config);
    const { server, db, state, masterSecret, logger } = gatehouse;

    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        process.stderr.write(`${signal} again: exiting now\n`);
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, 'shutting down: no new connections, finishing in-flight requests');
      gatehouse.close().then(
        () => {
          flushLogs(logger);
          process.exit(0);
        },
        (error) => {
          logger.error({ err: error }, 'error during shutdown');
          flushLogs(logger);
          process.exit(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));

    const address = await server.listen({ port: config.port, host: config.host });
    const lines = [
      `Gatehouse listening on ${address} (public URL ${config.publicUrl})`,
      `  database:      ${db.description}`,
      `  state store:   ${state.kind === 'redis' ? 'Redis' : 'in-memory (this process only; set REDIS_URL to share it between nodes)'}`,
      `  data dir:      ${config.dataDir}`,
      `  master secret: ${
        masterSecret.source === 'generated'
          ? `generated into ${masterSecret.path} (mode 0600); back it up, it encrypts signing keys`
          : masterSecret.source === 'data directory'
            ? `read from ${masterSecret.path}`
            : 'from GATEHOUSE_SECRET'
      }`,
      `  mail:          ${config.smtpUrl ? `SMTP ${new URL(config.smtpUrl).host}` : 'dev outbox in the database (set SMTP_URL to deliver mail; `npx gatehouse mail` lists it)'}`,
      `  API docs:      ${config.publicUrl}/docs`,
    ];
    if (!(await roleHasHolders(db, 'admin'))) {
      lines.push(
        '',
        'No administrator exists yet. Create the first one with:',
        config.databaseUrl
          ? '  npx gatehouse admin create --email you@example.com'
          : '  (stop this server: the embedded database serves one process) npx gatehouse admin create --email you@example.com',
        '  (add --password-stdin to type the password; without it one is generated and printed once)',
      );
    }
    process.stderr.write(`${lines.join('\n')}\n`);
    setTimeout(releaseStartupMemory, STARTUP_SETTLE_MS).unref();
    // Keep running until a signal arrives.
    return new Promise<number>(() => {});
  },
};
