// `map`: block-status entries merged and printed exactly as `qemu-img map` 7.2 does
// (img_map, entry_mergeable and dump_map_entry in qemu-img.c).
import type { ImageChain } from './backing-chain.js';
import { BlockStatus, type MapEntry } from './block-status.js';

export type MapFormat = 'json' | 'human';

/** QEMU's entry_mergeable: same flags and file, host offsets contiguous when there are offsets. */
export function mergeable(curr: MapEntry, next: MapEntry): boolean {
  if (curr.length === 0) return false;
  if (
    curr.zero !== next.zero ||
    curr.data !== next.data ||
    curr.depth !== next.depth ||
    curr.present !== next.present ||
    (curr.offset !== undefined) !== (next.offset !== undefined) ||
    (curr.filename !== undefined) !== (next.filename !== undefined)
  )
    return false;
  if (curr.filename !== undefined && curr.filename !== next.filename) return false;
  if (curr.offset !== undefined && curr.offset + curr.length !== next.offset) return false;
  return true;
}

/**
 * The merged map of a chain, entry by entry (memory stays bounded however large the image). In
 * human form QEMU folds "zero" and "not data" together before merging (dump_map_entry rewrites the
 * next entry), so the merge differs; `format` selects that.
 */
export async function* mergedEntries(chain: ImageChain, format: MapFormat = 'json'): AsyncGenerator<MapEntry> {
  const bs = await BlockStatus.open(chain);
  try {
    let curr: MapEntry | undefined;
    for await (const next of bs.entries()) {
      if (curr && mergeable(curr, next)) {
        curr.length += next.length;
        continue;
      }
      if (curr) {
        yield curr;
        if (format === 'human' && (!next.data || next.zero)) {
          next.data = false;
          next.zero = true;
        }
      }
      curr = next;
    }
    // An empty disk: qemu-img still dumps its initial, all-false entry of length 0.
    yield curr ?? { start: 0, length: 0, depth: 0, present: false, zero: false, data: false };
  } finally {
    await bs.close();
  }
}

/** The merged map of a chain as an array (see mergedEntries). */
export async function mapEntries(chain: ImageChain, format: MapFormat = 'json'): Promise<MapEntry[]> {
  const out: MapEntry[] = [];
  for await (const e of mergedEntries(chain, format)) out.push(e);
  return out;
}

/** One entry as qemu-img prints it in JSON (field order and spacing included). */
export function formatJsonEntry(e: MapEntry): string {
  let s = `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}`;
  if (e.offset !== undefined) s += `, "offset": ${e.offset}`;
  return `${s}}`;
}

/** The whole JSON output, byte for byte as qemu-img map --output=json. */
export function formatJson(entries: MapEntry[]): string {
  return `[${entries.map(formatJsonEntry).join(',\n')}]\n`;
}

/** `%#-16lx`: 0x-prefixed hex (bare 0 for zero), left-aligned in 16 columns. */
function col(n: number): string {
  return (n === 0 ? '0' : `0x${n.toString(16)}`).padEnd(16);
}

/**
 * The human output of qemu-img map: only ranges with data and a host offset. QEMU refuses (exit 1)
 * when some data has no host offset: compressed or encrypted clusters.
 */
export function formatHuman(entries: MapEntry[]): { text: string; error?: string } {
  let text = HUMAN_MAP_HEADER;
  for (const e of entries) {
    const line = formatHumanEntry(e);
    if (line === undefined) return { text, error: HUMAN_MAP_ERROR };
    text += line;
  }
  return { text };
}

export const HUMAN_MAP_HEADER = `${'Offset'.padEnd(16)}${'Length'.padEnd(16)}${'Mapped to'.padEnd(16)}File\n`;

/** One entry of the human form: a line, '' when QEMU prints nothing for it, undefined = refusal. */
export function formatHumanEntry(e: MapEntry): string | undefined {
  if (e.data && e.offset === undefined) return undefined;
  return e.data && !e.zero ? `${col(e.start)}${col(e.length)}${col(e.offset ?? 0)}${e.filename ?? ''}\n` : '';
}

/** QEMU's refusal of the human form when some data has no host offset. */
export const HUMAN_MAP_ERROR = 'File contains external, encrypted or compressed clusters.';
