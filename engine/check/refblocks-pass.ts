// QEMU's check_refblocks: every refcount-table entry must be clean, aligned, inside the image, and
// its block referenced exactly once (else the refcount structure itself needs a rebuild).
import { HostRole } from '../contract/roles.js';
import * as C from '../format/constants.js';
import { hex64, u32 } from '../format/bytes.js';
import { type EntryFinding, referrerOf } from './entry-finding.js';
import { msg } from './messages.js';
import { type CheckState, TWO32 } from './state.js';
import { nextNonZeroEntry } from './words.js';

export function checkRefblocks(state: CheckState): void {
  const rt = state.image.reftable;
  const n = rt.length / 8;
  for (let i = nextNonZeroEntry(rt, 0, n); i < n; i = nextNonZeroEntry(rt, i + 1, n)) {
    const hi = u32(rt, 8 * i);
    const lo = u32(rt, 8 * i + 4);
    if (hi === 0 && lo === 0) continue;
    const where: EntryFinding = {
      kind: '',
      table: 'reftable',
      tableOffset: state.image.header.refcountTableOffset,
      index: i,
      entry: hex64(hi, lo),
    };
    const offset = hi * TWO32 + ((lo & C.REFT_OFFSET_MASK_LO) >>> 0);
    if (lo & C.REFT_RESERVED_MASK_LO) {
      report(state, 'reftable-reserved-bits', msg.reftableReserved(i), where, true);
      continue;
    }
    if (offset % state.clusterSize !== 0) {
      report(state, 'refblock-unaligned', msg.refblockUnaligned(i), { ...where, offset }, true);
      continue;
    }
    const cluster = offset / state.clusterSize;
    if (cluster >= state.nbClusters()) {
      report(state, 'refblock-outside', msg.refblockOutside(i), { ...where, offset }, false);
      continue;
    }
    if (offset !== 0) {
      state.incRange(offset, state.clusterSize, HostRole.RefcountBlock, where);
      state.claimMeta(offset, state.clusterSize, HostRole.RefcountBlock, 'refcount block');
      const v = state.refAt(cluster);
      if (v !== 1) {
        const line = msg.refblockRefcount(i, v);
        state.say(line);
        state.counters.corruptions++;
        state.rebuild = true;
        state.find({ ...where, kind: 'refblock-shared', offset, refcount: v });
        state.anomalies.add('refblock-shared', {
          cluster,
          references: v,
          qemuMessage: line,
          referrer: referrerOf(where),
        });
        state.anomalies.cut();
      }
    }
  }
}

/** One bad reftable entry: QEMU's line, a corruption, the finding (at `at`) and its anomaly. */
function report(state: CheckState, kind: string, line: string, at: EntryFinding, rebuild: boolean): void {
  state.say(line);
  state.counters.corruptions++;
  if (rebuild) state.rebuild = true;
  state.find({ ...at, kind });
  state.anomalies.add(kind, { qemuMessage: line, referrer: referrerOf(at) });
  state.anomalies.cut();
}
