import { Command, CommanderError } from 'commander';
import { VERSION } from '../base/version.js';
import { describeCliError } from './input-errors.js';

interface CommandModule {
  register(program: Command): void;
}

/**
 * Every subcommand, by name. Each module registers itself with `register(program)`. Modules are
 * loaded lazily: a run loads only the command it names (start-up time matters for scripts and
 * triage loops), and all of them only for help or an unknown command.
 */
const COMMANDS: Record<string, () => Promise<CommandModule>> = {
  info: () => import('./commands/info.js'),
  map: () => import('./commands/map.js'),
  export: () => import('./commands/export.js'),
  check: () => import('./commands/check.js'),
  undo: () => import('./commands/undo.js'),
  triage: () => import('./commands/triage.js'),
  strip: () => import('./commands/strip.js'),
  salvage: () => import('./commands/salvage.js'),
  serve: () => import('./commands/serve.js'),
  lab: () => import('./commands/lab.js'),
};

export async function buildProgram(only?: string): Promise<Command> {
  const program = new Command('qcow2-doctor')
    .description('Inspect, check and safely repair qcow2 disk images')
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride();
  const names = only && only in COMMANDS ? [only] : Object.keys(COMMANDS);
  for (const name of names) (await COMMANDS[name]!()).register(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = await buildProgram(argv[2]);
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 1;
      return;
    }
    for (const line of await describeCliError(err, argv)) process.stderr.write(`qcow2-doctor: ${line}\n`);
    process.exitCode = 1;
  }
}
