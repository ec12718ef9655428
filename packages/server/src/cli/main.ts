import { StartupError } from '../errors.ts';
import { adminCommand } from './admin.ts';
import type { Command } from './commands.ts';
import { keysCommand } from './keys.ts';
import { mailCommand } from './mail.ts';
import { migrateCommand } from './migrate.ts';
import { startCommand } from './start.ts';
import { usersCommand } from './users.ts';

export const commands: Command[] = [
  startCommand,
  migrateCommand,
  adminCommand,
  keysCommand,
  mailCommand,
  usersCommand,
];

export function helpText(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'Usage: gatehouse <command> [options]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Configuration comes from environment variables (see README.md); `gatehouse <command> --help` shows a command.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${helpText()}\n`);
    return name ? 0 : 1;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    process.stderr.write(`Unknown command "${name}".\n\n${helpText()}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`Usage: ${command.usage}\n${command.summary}\n`);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    if (error instanceof StartupError) {
      process.stderr.write(`gatehouse ${name}: ${error.message}\n`);
      return 1;
    }
    if ((error as { name?: string }).name === 'DependencyUnavailableError') {
      process.stderr.write(
        `gatehouse ${name}: ${(error as Error).message}: ${String((error as Error).cause ?? '')}\n`,
      );
      return 1;
    }
    throw error;
  }
}
