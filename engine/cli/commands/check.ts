import type { Command } from 'commander';

// Placeholder: the 'check' command is being built (see the issue tracker).
export function register(program: Command): void {
  program.command('check').description('(not yet available)').allowUnknownOption().action(() => {
    throw new Error("'check' is not implemented yet");
  });
}
