// The snapshot table read leniently, for the layers it names: every entry up to QEMU's limits is
// followed until one lies past the end of the file; what cannot be followed is reported.
import * as C from '../../format/constants.js';
import { u16, u32, u64, utf8 } from '../../format/bytes.js';
import { snapshotEntryLength } from '../../format/snapshot.js';
import { readPadded } from '../../io/positional-io.js';
import type { SnapshotLayers, TraversalSource } from './source.js';
import type { Layer, SnapshotTableProblem } from './types.js';

export interface SnapshotTableRead extends SnapshotLayers {
  problems: SnapshotTableProblem[];
}

export async function readSnapshotLayers(src: TraversalSource): Promise<SnapshotTableRead> {
  const h = src.header;
  const out: SnapshotTableRead = { layers: [], tableBytes: 0, problems: [] };
  if (h.nbSnapshots === 0) return out;
  if (h.snapshotsOffset % src.geo.clusterSize !== 0) {
    out.problems.push({ index: -1, problem: 'unaligned', value: h.snapshotsOffset });
    return out;
  }
  const count = Math.min(h.nbSnapshots, C.QCOW_MAX_SNAPSHOTS);
  if (h.nbSnapshots > count) out.problems.push({ index: -1, problem: 'too-many', value: h.nbSnapshots });
  let pos = 0;
  for (let i = 0; i < count && pos <= C.QCOW_MAX_SNAPSHOTS_SIZE; i++) {
    const at = h.snapshotsOffset + pos;
    if (at >= src.fileSize) {
      out.problems.push({ index: i, problem: 'beyond-eof', value: at });
      break;
    }
    const fixed = await readPadded(src.io, at, C.SNAPSHOT_ENTRY_FIXED_SIZE);
    const idLen = u16(fixed, 12);
    const idBytes = idLen ? await readPadded(src.io, at + C.SNAPSHOT_ENTRY_FIXED_SIZE + u32(fixed, 36), idLen) : fixed;
    const layer: Layer = {
      l1Offset: u64(fixed, 0),
      l1Size: u32(fixed, 8),
      snapshotId: idLen ? utf8(idBytes, 0, idLen) : '',
      snapshotIndex: i,
      entryOffset: at,
    };
    out.layers.push(layer);
    pos += snapshotEntryLength(fixed, 0);
  }
  out.tableBytes = pos;
  return out;
}
