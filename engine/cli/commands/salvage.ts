import type { Command } from 'commander';

// Placeholder: the 'salvage' command is being built (see the issue tracker).
export function register(program: Command): void {
  program.command('salvage').description('(not yet available)').allowUnknownOption().action(() => {
    throw new Error("'salvage' is not implemented yet");
  });
}
