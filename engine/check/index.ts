// The checker's entry points: `qemu-img check` (without -r) on an opened image or a file, plus our
// anomalies and, on request, the role and guest maps. Checking never writes.
export { runCheckPasses } from './analyze.js';
export type { CheckAnalysis, EntryFinding } from './analyze.js';
export { checkFile, checkImage, openForCheck, toCheckResult } from './run.js';
export { checkInWorker } from './worker-client.js';
