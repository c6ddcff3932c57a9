import type { Command } from 'commander';

// Placeholder: the 'triage' command is being built (see the issue tracker).
export function register(program: Command): void {
  program.command('triage').description('(not yet available)').allowUnknownOption().action(() => {
    throw new Error("'triage' is not implemented yet");
  });
}
