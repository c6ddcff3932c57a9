import type { Command } from 'commander';

// Placeholder: the 'info' command is being built (see the issue tracker).
export function register(program: Command): void {
  program.command('info').description('(not yet available)').allowUnknownOption().action(() => {
    throw new Error("'info' is not implemented yet");
  });
}
