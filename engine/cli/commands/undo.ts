import type { Command } from 'commander';

// Placeholder: the 'undo' command is being built (see the issue tracker).
export function register(program: Command): void {
  program.command('undo').description('(not yet available)').allowUnknownOption().action(() => {
    throw new Error("'undo' is not implemented yet");
  });
}
