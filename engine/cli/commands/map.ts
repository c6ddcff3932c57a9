import type { Command } from 'commander';

// Placeholder: the 'map' command is being built (see the issue tracker).
export function register(program: Command): void {
  program.command('map').description('(not yet available)').allowUnknownOption().action(() => {
    throw new Error("'map' is not implemented yet");
  });
}
