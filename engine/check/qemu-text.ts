// QEMU's check output: the human summary (qemu-img.c dump_human_image_check) and the JSON
// document (ImageCheck, pretty-printed with 4 spaces), byte for byte.
import type { Anomaly, QemuCounters } from './types.js';

/** C's printf("%0.2f"): like toFixed(2) except exact ties round half to even (glibc). */
export function cFixed2(x: number): string {
  const e = x * 8; // a double with an exact third decimal 5 is an odd multiple of 1/8
  if (Number.isInteger(e) && Math.abs(e) % 2 === 1) {
    const lo = Math.floor(x * 100);
    const pick = lo % 2 === 0 ? lo : lo + 1;
    return (pick / 100).toFixed(2);
  }
  return x.toFixed(2);
}

export function humanSummary(c: QemuCounters): string {
  let s = '';
  if (c.corruptions === 0 && c.leaks === 0 && c.checkErrors === 0) {
    s += 'No errors were found on the image.\n';
  } else {
    if (c.corruptions)
      s += `\n${c.corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n`;
    if (c.leaks)
      s += `\n${c.leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n`;
    if (c.checkErrors) s += `\n${c.checkErrors} internal errors have occurred during the check.\n`;
  }
  if (c.totalClusters !== 0 && c.allocatedClusters !== 0) {
    s +=
      `${c.allocatedClusters}/${c.totalClusters} = ${cFixed2((100 * c.allocatedClusters) / c.totalClusters)}% allocated, ` +
      `${cFixed2((100 * c.fragmentedClusters) / c.allocatedClusters)}% fragmented, ` +
      `${cFixed2((100 * c.compressedClusters) / c.allocatedClusters)}% compressed clusters\n`;
  }
  if (c.imageEndOffset) s += `Image end offset: ${c.imageEndOffset}\n`;
  return s;
}

/** The "repaired" block qemu-img prints (human mode) before re-checking. */
export function repairedBlock(c: Pick<QemuCounters, 'leaksFixed' | 'corruptionsFixed'>): string {
  return `The following inconsistencies were found and repaired:\n\n    ${c.leaksFixed} leaked clusters\n    ${c.corruptionsFixed} corruptions\n\nDouble checking the fixed image now...\n`;
}

/**
 * QEMU's JSON object for a check: field names, presence rules and the key order QEMU 7.2 prints
 * (its QDict iteration order: buckets of tdb_hash(key) % 512), then our `anomalies` when given.
 */
export function qemuJsonObject(filename: string, c: QemuCounters, anomalies?: Anomaly[]): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const opt = (k: string, v: number) => {
    if (v !== 0) o[k] = v;
  };
  opt('image-end-offset', c.imageEndOffset);
  opt('compressed-clusters', c.compressedClusters);
  opt('total-clusters', c.totalClusters);
  opt('corruptions', c.corruptions);
  opt('corruptions-fixed', c.corruptionsFixed);
  o['check-errors'] = c.checkErrors;
  opt('leaks', c.leaks);
  opt('leaks-fixed', c.leaksFixed);
  opt('allocated-clusters', c.allocatedClusters);
  o.filename = filename;
  o.format = 'qcow2';
  opt('fragmented-clusters', c.fragmentedClusters);
  if (anomalies) o.anomalies = anomalies;
  return o;
}

export function qemuJson(filename: string, c: QemuCounters, anomalies?: Anomaly[]): string {
  return `${JSON.stringify(qemuJsonObject(filename, c, anomalies), null, 4)}\n`;
}
