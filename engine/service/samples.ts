/** The bundled sample images (resources/samples), by file name. */
import { readdir, realpath } from 'node:fs/promises';
import { join } from 'node:path';

export async function listSamples(dir: string | undefined): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (!dir) return out;
  try {
    for (const n of (await readdir(dir)).sort())
      if (/\.(qcow2|qcow)$/.test(n)) out.set(n, await realpath(join(dir, n)));
  } catch {
    // No samples bundled.
  }
  return out;
}
