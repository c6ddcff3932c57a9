import { Command, CommanderError } from 'commander';
import { VERSION } from '../version.js';
import * as info from './commands/info.js';
import * as map from './commands/map.js';
import * as exportCmd from './commands/export.js';
import * as check from './commands/check.js';
import * as undo from './commands/undo.js';
import * as triage from './commands/triage.js';
import * as strip from './commands/strip.js';
import * as salvage from './commands/salvage.js';
import * as serve from './commands/serve.js';
import * as lab from './commands/lab.js';

/** Each command module registers itself: `register(program)` adds one subcommand. */
const COMMANDS = [info, map, exportCmd, check, undo, triage, strip, salvage, serve, lab];

export function buildProgram(): Command {
  const program = new Command('qcow2-doctor')
    .description('Inspect, check and safely repair qcow2 disk images')
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride();
  for (const c of COMMANDS) c.register(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? 0 : 1;
      return;
    }
    process.stderr.write(`qcow2-doctor: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
}
