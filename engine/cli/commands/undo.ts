// `qcow2-doctor undo JOURNAL`: put back the bytes a repair replaced, from its undo journal.
import type { Command } from 'commander';
import { undoRepair } from '../../repair/index.js';

export async function runUndo(journal: string, opts: { image?: string; force?: boolean }): Promise<number> {
  try {
    const r = await undoRepair(journal, opts);
    process.stdout.write(
      `Restored ${r.regionsRestored} region(s), ${r.bytesRestored} bytes, of ${r.image}; file length ${r.originalLength}.\n`,
    );
    return 0;
  } catch (e) {
    process.stderr.write(`qcow2-doctor: ${(e as Error).message}\n`);
    return 1;
  }
}

export function register(program: Command): void {
  program
    .command('undo')
    .description('undo a repair: restore the original bytes recorded in its journal (verified by SHA-256)')
    .argument('<journal>', 'the journal file printed by the repair')
    .option('--image <path>', 'the image to restore (default: the path recorded in the journal)')
    .option('--force', 'restore even if the image was changed after the repair')
    .action(async (journal: string, opts: { image?: string; force?: boolean }) => {
      process.exitCode = await runUndo(journal, opts);
    });
}
