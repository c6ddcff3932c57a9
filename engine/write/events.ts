/**
 * Named points of the write path, with QEMU's blkdebug event names (block/qcow2*.c, QEMU 7.2), so
 * fault-injection tests read like qemu-iotest 026. The writer announces each one through
 * `PositionalIO.event` just before the request(s) it names.
 */
export const WRITE_EVENTS = [
  'l1_update',
  'l1_grow_alloc_table',
  'l1_grow_write_table',
  'l1_grow_activate_table',
  'l2_load',
  'l2_update',
  'l2_update_compressed',
  'l2_alloc_cow_read',
  'l2_alloc_write',
  'write_aio',
  'write_compressed',
  'read_aio',
  'read_compressed',
  'cow_read',
  'cow_write',
  'reftable_grow',
  'refblock_load',
  'refblock_update_part',
  'refblock_alloc',
  'refblock_alloc_hookup',
  'refblock_alloc_write',
  'refblock_alloc_write_blocks',
  'refblock_alloc_write_table',
  'refblock_alloc_switch_table',
  'cluster_alloc',
  'cluster_alloc_bytes',
  'cluster_free',
  'flush_to_disk',
  // Ours (no blkdebug equivalent): snapshot table rewrite and header switches.
  'snapshot_write_table',
  'snapshot_switch_table',
  'header_update',
] as const;

export type WriteEvent = (typeof WRITE_EVENTS)[number];
