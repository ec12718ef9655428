import { loadConfig } from '../config/config.ts';
import { openConfiguredDatabase } from '../storage/index.ts';
import { loadMigrations, migrate } from '../storage/migrate.ts';
import type { Command } from './commands.ts';

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'Apply pending database migrations and exit',
  usage: 'gatehouse migrate',
  async run() {
    const config = loadConfig();
    const db = await openConfiguredDatabase(config);
    try {
      const applied = await migrate(db);
      const total = loadMigrations().length;
      process.stdout.write(
        applied.length === 0
          ? `${db.description}: up to date (${total} migrations)\n`
          : `${db.description}: applied ${applied.map((m) => `${String(m.version).padStart(4, '0')}_${m.name}`).join(', ')}\n`,
      );
      return 0;
    } finally {
      await db.close();
    }
  },
};
