// PLACEHOLDER: the reports work (another issue) replaces this body with the full report writer.
// Contract: write a report of `result` for `image` to `path` (format chosen by the extension).
import { writeFile } from 'node:fs/promises';
import type { CheckResult } from '../check/types.js';
import type { Qcow2Image } from '../image/qcow2-image.js';

export async function writeReportFile(path: string, result: CheckResult, image: Qcow2Image): Promise<void> {
  const { roleMap: _r, guestMap: _g, ...plain } = result;
  void _r;
  void _g;
  await writeFile(path, `${JSON.stringify({ image: image.io.name, ...plain }, null, 2)}\n`);
}
