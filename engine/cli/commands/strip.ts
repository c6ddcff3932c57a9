import type { Command } from 'commander';

// Placeholder: the 'strip' command is being built (see the issue tracker).
export function register(program: Command): void {
  program.command('strip').description('(not yet available)').allowUnknownOption().action(() => {
    throw new Error("'strip' is not implemented yet");
  });
}
