// QEMU's per-problem lines, byte for byte (block/qcow2-refcount.c, qcow2-snapshot.c of QEMU 7.2).
// `%lx` prints hex without 0x; `%#lx` with 0x. Each function returns the line without "\n".

export const msg = {
  l1Reserved: (entryHex: string) => `ERROR found L1 entry with reserved bits set: ${entryHex}`,
  l2TableUnaligned: (offHex: string) => `ERROR l2_offset=${offHex}: Table is not cluster aligned; L1 entry corrupted`,
  l2Reserved: (entryHex: string) => `ERROR found l2 entry with reserved bits set: ${entryHex}`,
  compressedCopied: (coffHex: string) =>
    `ERROR: coffset=0x${coffHex}: copied flag must never be set for compressed clusters`,
  compressedWithDataFile: (index: number, entryHex: string) =>
    `ERROR compressed cluster ${index} with data file, entry=0x${entryHex}`,
  compressedWithBitmap: (index: number, entryHex: string) =>
    `ERROR compressed cluster ${index} with non-zero subcluster allocation bitmap, entry=0x${entryHex}`,
  corruptedSubclusterBitmap: (offHex: string) =>
    `ERROR offset=${offHex}: Allocated cluster has corrupted subcluster allocation bitmap`,
  preallocUnaligned: (offHex: string) =>
    `ERROR offset=${offHex}: Preallocated cluster is not properly aligned; L2 entry corrupted.`,
  dataUnaligned: (offHex: string) =>
    `ERROR offset=${offHex}: Data cluster is not properly aligned; L2 entry corrupted.`,
  unallocatedWithBitmap: () => 'ERROR: Unallocated cluster has non-zero subcluster allocation map',
  beyondEof: (offHex: string, sizeHex: string) =>
    `ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${offHex} size 0x${sizeHex}`,
  overflow: (offHex: string) => `ERROR: overflow cluster offset=0x${offHex}`,
  overflowHint: () =>
    'Use qemu-img amend to increase the refcount entry width or qemu-img convert to create a clean copy if the image cannot be opened for writing',
  snapshotsWithDataFile: (n: number) => `ERROR ${n} snapshots in image with data file`,
  snapshotL1Unaligned: (id: string, name: string, offHex: string) =>
    `ERROR snapshot ${id} (${name}) l1_offset=0x${offHex}: L1 table is not cluster aligned; snapshot table entry corrupted`,
  snapshotL1TooLarge: (id: string, name: string, size: number) =>
    `ERROR snapshot ${id} (${name}) l1_size=0x${size.toString(16)}: L1 table is too large; snapshot table entry corrupted`,
  reftableReserved: (i: number) => `ERROR refcount table entry ${i} has reserved bits set`,
  refblockUnaligned: (i: number) => `ERROR refcount block ${i} is not cluster aligned; refcount table entry corrupted`,
  refblockOutside: (i: number) => `ERROR refcount block ${i} is outside image`,
  refblockRefcount: (i: number, rc: number) => `ERROR refcount block ${i} refcount=${rc}`,
  refcountMismatch: (cluster: number, refcount: number, reference: number) =>
    `${refcount < reference ? 'ERROR' : 'Leaked'} cluster ${cluster} refcount=${refcount} reference=${reference}`,
  refblockSignal: (offset: number, index: number) =>
    `qcow2: Image is corrupt: Refblock offset ${hexAlt(offset)} unaligned (reftable index: ${hexAlt(index)}); further non-fatal corruption events will be suppressed`,
  cantGetRefcount: (cluster: number) => `Can't get refcount for cluster ${cluster}: Input/output error`,
  copiedL2: (l1Index: number, entryHex: string, rc: number) =>
    `ERROR OFLAG_COPIED L2 cluster: l1_index=${l1Index} l1_entry=${entryHex} refcount=${rc}`,
  copiedData: (entryHex: string, rc: number) => `ERROR OFLAG_COPIED data cluster: l2_entry=${entryHex} refcount=${rc}`,
  snapshotIncomplete: (i: number) => `ERROR snapshot table entry ${i} is incomplete`,
} as const;

/** C's `%#x`: 0 prints as "0", anything else as 0x... */
export function hexAlt(v: number): string {
  return v === 0 ? '0' : `0x${v.toString(16)}`;
}
