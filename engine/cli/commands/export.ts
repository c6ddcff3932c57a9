import type { Command } from 'commander';

// Placeholder: the 'export' command is being built (see the issue tracker).
export function register(program: Command): void {
  program.command('export').description('(not yet available)').allowUnknownOption().action(() => {
    throw new Error("'export' is not implemented yet");
  });
}
