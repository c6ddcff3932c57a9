import type { Command } from 'commander';

// Placeholder: the 'serve' command is being built (see the issue tracker).
export function register(program: Command): void {
  program.command('serve').description('(not yet available)').allowUnknownOption().action(() => {
    throw new Error("'serve' is not implemented yet");
  });
}
