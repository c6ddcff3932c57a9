// What a file without a qcow2 header is, by its content: text or other non-disk data, a raw disk
// (partition table or file system), or a qcow2 image whose header is destroyed (its tables are still
// there: salvage can read it). Read-only, bounded: at most the first 4 MiB.
import { ClusterClass, classifyCluster } from '../format/cluster-content.js';
import { openInputFile } from '../io/input-file.js';

export type ContentKind = 'not-disk' | 'raw-disk' | 'damaged-header';

export interface ContentGuess {
  kind: ContentKind;
  /** Why, in words ("text file", "MBR partition table", "qcow2 tables found at 0x30000"). */
  why: string;
}

const PROBE_BYTES = 4 * 1024 * 1024;
const ascii = (b: Uint8Array, off: number, s: string): boolean =>
  off + s.length <= b.length && [...s].every((ch, i) => b[off + i] === ch.charCodeAt(0));

/** Printable text (ASCII or UTF-8 continuation bytes, tabs, newlines) over the first 64 KiB. */
function looksLikeText(b: Uint8Array): boolean {
  const n = Math.min(b.length, 65536);
  if (n === 0) return false;
  let printable = 0;
  for (let i = 0; i < n; i++) {
    const c = b[i]!;
    if (c === 9 || c === 10 || c === 13 || (c >= 32 && c < 127) || c >= 128) printable++;
    else if (c === 0) return false;
  }
  return printable / n > 0.98;
}

function rawDiskSignature(b: Uint8Array): string | null {
  if (ascii(b, 512, 'EFI PART')) return 'GPT partition table';
  if (ascii(b, 3, 'NTFS    ')) return 'NTFS file system';
  if (b.length > 1081 && b[1080] === 0x53 && b[1081] === 0xef) return 'ext2/3/4 file system';
  if (ascii(b, 65536 + 64, '_BHRfS_M')) return 'Btrfs file system';
  if (ascii(b, 0, 'XFSB')) return 'XFS file system';
  if (ascii(b, 32769, 'CD001')) return 'ISO 9660 image';
  if (b[510] === 0x55 && b[511] === 0xaa) return 'MBR partition table';
  return null;
}

/** qcow2 tables (pointer tables, refcount blocks) at cluster boundaries, for the usual cluster sizes. */
function qcow2Tables(b: Uint8Array, fileSize: number): number | null {
  for (const cs of [65536, 4096, 2097152, 1048576, 524288, 262144, 131072, 32768, 16384, 8192]) {
    const ctx = { clusterSize: cs, fileSize, targetLimit: fileSize, refcountOrder: 4, extendedL2: false };
    for (let off = cs; off + cs <= b.length; off += cs) {
      const c = classifyCluster(b, off, off, ctx);
      // An L1 or L2 table with COPIED entries, or a refcount block: a lone number in data is neither.
      if ((c.cls === ClusterClass.PointerTable && (c.table?.copied ?? 0) > 0) || c.cls === ClusterClass.RefcountBlock)
        return off;
    }
  }
  return null;
}

/** The triage's sentence for each kind. */
export function contentSentence(g: ContentGuess): string {
  if (g.kind === 'damaged-header')
    return `damaged qcow2 header: ${g.why}; run qcow2-doctor salvage on it to recover its data`;
  if (g.kind === 'raw-disk') return `raw disk: ${g.why}; not qcow2, so there is nothing to check`;
  return `not a disk image: ${g.why}`;
}

export async function guessContent(path: string): Promise<ContentGuess> {
  const io = await openInputFile(path, { syncReads: true });
  let b: Uint8Array;
  let size: number;
  try {
    size = await io.size();
    b = await io.read(0, Math.min(size, PROBE_BYTES));
  } finally {
    await io.close();
  }
  if (looksLikeText(b)) return { kind: 'not-disk', why: 'a text file' };
  const sig = rawDiskSignature(b);
  if (sig) return { kind: 'raw-disk', why: `a raw disk (${sig})` };
  const table = qcow2Tables(b, size);
  if (table !== null)
    return { kind: 'damaged-header', why: `a qcow2 image with a damaged header (tables at 0x${table.toString(16)})` };
  return { kind: 'not-disk', why: 'no partition table, file system or qcow2 table found' };
}
