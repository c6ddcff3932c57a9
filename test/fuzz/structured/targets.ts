// What the fuzzer drives, in process on read-only in-memory files, and what counts as a finding.
// Every target reads a (hostile) image the way a user's command would; none may write.
import { CancelledError, Qcow2FormatError, UnreadableError } from '../../../engine/base/errors.js';
import { ContractError } from '../../../engine/contract/errors.js';
import { METHODS, validateArgs } from '../../../engine/contract/contract.js';
import { decodeMessage, encodeMessage } from '../../../engine/contract/wire.js';
import { MemoryIO } from '../../../engine/io/memory-io.js';
import { openChain } from '../../../engine/image/backing-chain.js';
import { GuestReader } from '../../../engine/image/guest-reader.js';
import { qcow2ImageInfo, rawImageInfo } from '../../../engine/image/info.js';
import { Qcow2Image } from '../../../engine/image/qcow2-image.js';
import { renderInfoHuman, renderInfoJson } from '../../../engine/report/info-render.js';
import { checkImage, openForCheck, runCheckPasses } from '../../../engine/check/index.js';
import { planRepair } from '../../../engine/repair/planner.js';
import { scanAndReconstruct } from '../../../engine/salvage/salvage.js';

export const IMAGE_TARGETS = ['info', 'check', 'repair-plan', 'salvage-scan'] as const;
export const TARGETS = [...IMAGE_TARGETS, 'contract'] as const;
export type TargetName = (typeof TARGETS)[number];

const NAME = 'fuzz.qcow2';
/** Guest bytes read per case at most (a mutated size can claim petabytes). */
const GUEST_BYTES = 1024 * 1024;

const ro = (bytes: Uint8Array): MemoryIO => new MemoryIO(bytes, NAME, true);

async function info(bytes: Uint8Array): Promise<void> {
  const openFile = async (p: string) => {
    if (p !== NAME) throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
    return ro(bytes);
  };
  const chain = await openChain(NAME, { noDataFile: true, openFile, partial: true });
  try {
    const top = chain.top;
    const i = top.image
      ? await qcow2ImageInfo(top.image, { filename: NAME })
      : await rawImageInfo(top.io, { filename: NAME });
    JSON.parse(renderInfoJson(i));
    renderInfoHuman(i);
    if (top.image?.header.cryptMethod) return;
    const reader = await GuestReader.open(chain);
    const end = Math.min(reader.size, GUEST_BYTES);
    for (let off = 0; off < end; off += 256 * 1024) await reader.read(off, Math.min(256 * 1024, end - off));
  } finally {
    await chain.close();
  }
}

async function check(bytes: Uint8Array): Promise<void> {
  await checkImage(await openForCheck(ro(bytes)));
}

async function repairPlan(bytes: Uint8Array): Promise<void> {
  const io = ro(bytes);
  const img = await Qcow2Image.open(io, { checkMode: true, zeroFillPastEof: true });
  const before = await runCheckPasses(img, {});
  for (const mode of ['leaks', 'all'] as const) await planRepair(io, { mode, name: NAME, anomalies: before.anomalies });
}

async function salvageScan(bytes: Uint8Array): Promise<void> {
  await scanAndReconstruct(ro(bytes), { noBacking: true });
}

export const IMAGE_RUNNERS: Record<(typeof IMAGE_TARGETS)[number], (bytes: Uint8Array) => Promise<void>> = {
  info,
  check,
  'repair-plan': repairPlan,
  'salvage-scan': salvageScan,
};

/** One request as a client could send it: a method name and arguments (decoded JSON), and a frame. */
export interface ContractCase {
  method: string;
  args: unknown;
  frame?: Uint8Array;
}

/** The serve contract's validators and wire decoder on one hostile request. */
export async function contract(c: ContractCase): Promise<void> {
  const method = METHODS.includes(c.method as never) ? (c.method as (typeof METHODS)[number]) : METHODS[0]!;
  let refusal: ContractError | undefined;
  try {
    validateArgs(method, c.args);
  } catch (e) {
    if (!(e instanceof ContractError)) throw e;
    if (e.message.includes('\n')) throw new Error(`multi-line ContractError: ${JSON.stringify(e.message)}`);
    refusal = e;
  }
  if (c.frame) {
    try {
      decodeMessage(c.frame);
    } catch (e) {
      // A malformed frame is refused with a plain Error (or the JSON parser's SyntaxError).
      if (!(e instanceof Error) || (e.constructor !== Error && !(e instanceof SyntaxError))) throw e;
    }
  }
  // What is encoded decodes to the same value (for values a peer could send: not nested past 100).
  if (depthOf(c.args) <= 100) {
    const again = decodeMessage(encodeMessage({ method, args: c.args }));
    if (JSON.stringify(again) !== JSON.stringify({ method, args: c.args }))
      throw new TypeError('wire: a message does not survive encode + decode');
  }
  // Refused arguments end the case as refused (the expected outcome for most hostile requests).
  if (refusal) throw refusal;
}

function depthOf(v: unknown, d = 0): number {
  if (d > 100 || typeof v !== 'object' || v === null) return d;
  let m = d;
  for (const x of Object.values(v)) m = Math.max(m, depthOf(x, d + 1));
  return m;
}

/** Errors a hostile image may legitimately end in: the engine's typed refusals. */
const TYPED = [Qcow2FormatError, UnreadableError, CancelledError, ContractError];

/**
 * Is `e` an acceptable outcome for a hostile input? The engine's typed errors, or (salvage and
 * the planner refuse with plain one-line Errors) an Error that is exactly `Error`. A TypeError,
 * RangeError (an allocation from a hostile size, a bad typed-array offset), ReferenceError or a
 * stack overflow is a bug.
 */
export function isExpectedError(e: unknown): boolean {
  if (TYPED.some((T) => e instanceof T)) return true;
  return e instanceof Error && e.constructor === Error && !e.message.includes('\n');
}
