// Our CLI run inside the campaign's worker instead of a process per command: the same entry point
// the launcher runs (the bundle's `main`, or dist/engine/cli/main.js when the bundle is older, as
// the launcher decides), with its standard output and error captured and its exit code read from
// `process.exitCode` (what the launcher exits with). A fresh Node per command cost more CPU than
// the command itself on the campaign's small images.
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { LAUNCHER, type Ran, repoRoot } from './tools.js';

type Main = (argv: string[]) => Promise<void>;
type Write = typeof process.stdout.write;

/** The runner's output caps, as the spawned runner keeps them (runAsync). */
const OUT_CAP = 1 << 24;
const ERR_CAP = 1 << 20;

const mtime = (f: string): number => statSync(f, { throwIfNoEntry: false })?.mtimeMs ?? -1;

async function loadMain(): Promise<Main> {
  const dist = join(repoRoot(), 'dist');
  const bundle = join(dist, 'cli', 'qcow2-doctor.cjs');
  const modules = join(dist, 'engine', 'cli', 'main.js');
  if (mtime(bundle) >= 0 && mtime(bundle) >= mtime(modules)) return createRequire(import.meta.url)(bundle).main as Main;
  if (mtime(modules) < 0) throw new Error('campaign: no dist/ build of the CLI (run npm run build:cli)');
  return ((await import(pathToFileURL(modules).href)) as { main: Main }).main;
}

/** A writer that keeps what it is given (up to `cap` characters, as a pipe reader would). */
function capture(cap: number): { write: Write; text: () => string } {
  let text = '';
  const write = ((chunk: string | Uint8Array, enc?: unknown, cb?: unknown): boolean => {
    if (text.length < cap) text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    const done = typeof enc === 'function' ? enc : cb;
    if (typeof done === 'function') process.nextTick(done as () => void);
    return true;
  }) as Write;
  return { write, text: () => text };
}

/** A runner of our CLI in this process; one command at a time (standard output is process-wide). */
export async function inProcessCli(): Promise<(args: string[]) => Promise<Ran>> {
  const main = await loadMain();
  let busy = false;
  return async (args) => {
    if (busy) throw new Error('campaign: in-process CLI runs overlap');
    busy = true;
    const out = capture(OUT_CAP);
    const err = capture(ERR_CAP);
    const saved = { out: process.stdout.write, err: process.stderr.write };
    process.stdout.write = out.write;
    process.stderr.write = err.write;
    process.exitCode = undefined;
    let status: number;
    try {
      await main([process.execPath, LAUNCHER, ...args]);
      status = Number(process.exitCode ?? 0);
    } catch (e) {
      // What the launcher does with a command that throws: one line, exit 1.
      err.write(`qcow2-doctor: ${(e as Error)?.message ? (e as Error).message : String(e)}\n`);
      status = 1;
    } finally {
      process.stdout.write = saved.out;
      process.stderr.write = saved.err;
      process.exitCode = undefined;
      busy = false;
    }
    return { status, stdout: out.text(), stderr: err.text() };
  };
}
