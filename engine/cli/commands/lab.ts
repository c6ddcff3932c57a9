import type { Command } from 'commander';

// Placeholder: the 'lab' command is being built (see the issue tracker).
export function register(program: Command): void {
  program.command('lab').description('(not yet available)').allowUnknownOption().action(() => {
    throw new Error("'lab' is not implemented yet");
  });
}
