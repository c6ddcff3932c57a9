// Fault injection at each named event of the write path (QEMU's blkdebug events, as iotest 026
// does): an I/O error (EIO once, ENOSPC for good) or a power cut right after the event. The
// operation fails with a one-line WriteError; the image on disk then checks clean or leaks-only
// with qemu-img; after a one-off error the same writer carries on (its memory was backed out).
import { afterAll, describe, expect, it } from 'vitest';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileIO } from '../../engine/io/file-io.js';
import type { PositionalIO } from '../../engine/io/positional-io.js';
import { FaultIO, type FaultRule } from '../../engine/io/fault-io.js';
import { Qcow2Writer } from '../../engine/write/writer.js';
import { WriteError } from '../../engine/write/write-error.js';
import { createSnapshot, deleteSnapshot } from '../../engine/write/snapshots.js';
import { patternBytes } from '../../engine/lab/workloads.js';
import { createQcow2, qemuCheck, qemuIo, tempDir } from '../helpers/qemu.js';

const t = tempDir('q2d-faults-');
afterAll(t.cleanup);

interface Scenario {
  make(file: string): void;
  run(w: Qcow2Writer): Promise<void>;
}

const K = 1024;
const SCENARIOS: Record<string, Scenario> = {
  alloc: {
    // iotest 026's shape: 1 KiB clusters, data already there so tables are loaded from disk.
    make: (f) => {
      createQcow2(f, '1G', { cluster_size: 1024 });
      qemuIo(f, ['write -P 0x11 0 64k']);
    },
    run: async (w) => {
      await w.write(0, patternBytes(1, 0, 128 * K));
      await w.write(300 * K + 100, patternBytes(2, 300 * K + 100, 1000));
      await w.write(512 * K * K, patternBytes(3, 512 * K * K, 4 * K));
      await w.close();
    },
  },
  refcount: {
    // 64-bit refcounts in 512-byte clusters: new refcount blocks every 64 clusters, and the
    // refcount table outgrows its cluster after 2 MiB.
    make: (f) => createQcow2(f, '8M', { cluster_size: 512, refcount_bits: 64 }),
    run: async (w) => {
      await w.write(0, patternBytes(4, 0, 2304 * K));
      await w.close();
    },
  },
  l1: {
    make: (f) => createQcow2(f, '64k', { cluster_size: 512 }),
    run: async (w) => {
      await w.resize(4 * K * K);
      await w.write(4 * K * K - 4 * K, patternBytes(5, 4 * K * K - 4 * K, 4 * K));
      await w.close();
    },
  },
  compressed: {
    make: (f) => {
      createQcow2(f, '1M', { cluster_size: 4096 });
      qemuIo(f, ['write -c -P 0x21 0 4k']);
    },
    run: async (w) => {
      await w.writeCompressed(8 * K, patternBytes(6, 8 * K, 4 * K));
      await w.writeCompressed(12 * K, patternBytes(7, 12 * K, 4 * K));
      await w.write(512, patternBytes(8, 512, 512)); // COW out of QEMU's compressed cluster
      await w.close();
    },
  },
  snapshot: {
    make: (f) => {
      createQcow2(f, '1M', { cluster_size: 4096 });
      qemuIo(f, ['write -P 0x31 0 16k']);
    },
    run: async (w) => {
      await createSnapshot(w, 's');
      await w.write(4 * K, patternBytes(9, 4 * K, 4 * K));
      await w.discard(8 * K, 4 * K);
      await deleteSnapshot(w, 's');
      await w.close();
    },
  },
};

const EVENTS: Array<[string, keyof typeof SCENARIOS]> = [
  ['l1_update', 'alloc'],
  ['l2_load', 'alloc'],
  ['l2_update', 'alloc'],
  ['l2_alloc_write', 'alloc'],
  ['write_aio', 'alloc'],
  ['refblock_load', 'alloc'],
  ['refblock_update_part', 'alloc'],
  ['cluster_alloc', 'alloc'],
  ['cow_read', 'alloc'],
  ['cow_write', 'alloc'],
  ['flush_to_disk', 'alloc'],
  ['refblock_alloc', 'refcount'],
  ['refblock_alloc_write', 'refcount'],
  ['refblock_alloc_hookup', 'refcount'],
  ['reftable_grow', 'refcount'],
  ['refblock_alloc_write_blocks', 'refcount'],
  ['refblock_alloc_write_table', 'refcount'],
  ['refblock_alloc_switch_table', 'refcount'],
  ['l1_grow_alloc_table', 'l1'],
  ['l1_grow_write_table', 'l1'],
  ['l1_grow_activate_table', 'l1'],
  ['header_update', 'l1'],
  ['cluster_alloc_bytes', 'compressed'],
  ['write_compressed', 'compressed'],
  ['l2_update_compressed', 'compressed'],
  ['read_compressed', 'compressed'],
  ['snapshot_write_table', 'snapshot'],
  ['snapshot_switch_table', 'snapshot'],
  ['l2_alloc_cow_read', 'snapshot'],
  ['cluster_free', 'snapshot'],
];

const VARIANTS: Array<{ label: string; rule: Omit<FaultRule, 'event'> }> = [
  { label: 'EIO once', rule: { errno: 'EIO', once: true } },
  { label: 'ENOSPC for good', rule: { errno: 'ENOSPC', once: false } },
  { label: 'power cut', rule: { action: 'crash' } },
  { label: 'EIO once on any request (reads too)', rule: { errno: 'EIO', once: true, requests: 'all' } },
];

const templates = new Map<string, string>();
function template(name: keyof typeof SCENARIOS): string {
  let f = templates.get(name);
  if (!f) {
    f = join(t.dir, `template-${name}.qcow2`);
    SCENARIOS[name]!.make(f);
    templates.set(name, f);
  }
  return f;
}

/** The file without fdatasync: what reaches the file is what matters here, not durability. */
class NoSyncFile implements PositionalIO {
  constructor(private readonly f: FileIO) {}
  get name(): string {
    return this.f.name;
  }
  get readOnly(): boolean {
    return this.f.readOnly;
  }
  read(o: number, n: number): Promise<Uint8Array> {
    return this.f.read(o, n);
  }
  write(o: number, d: Uint8Array): Promise<void> {
    return this.f.write(o, d);
  }
  async flush(): Promise<void> {}
  size(): Promise<number> {
    return this.f.size();
  }
  truncate(n: number): Promise<void> {
    return this.f.truncate(n);
  }
  close(): Promise<void> {
    return this.f.close();
  }
}

let n = 0;
describe('fault injection at named events', () => {
  for (const [event, scen] of EVENTS) {
    it(`${event} (${scen}): EIO once / ENOSPC for good / power cut / read error leave no corruption`, async () => {
      for (const v of VARIANTS) {
        const f = join(t.dir, `f${n++}.qcow2`);
        copyFileSync(template(scen), f);
        const io = await FileIO.open(f, { write: true });
        const fio = new FaultIO(new NoSyncFile(io), [{ event, ...v.rule }]);
        const w = await Qcow2Writer.open(fio);
        let err: unknown;
        try {
          await SCENARIOS[scen]!.run(w);
        } catch (e) {
          err = e;
        }
        expect(fio.seen, `${event} announced`).toContain(event);
        expect(err, `${event} ${v.label}: the operation reports the failure`).toBeInstanceOf(WriteError);
        expect((err as Error).message.split('\n')).toHaveLength(1);
        if (v.rule.action !== 'crash')
          expect((err as Error).message).toMatch(v.rule.errno === 'EIO' ? /Input\/output error/ : /No space left/);
        let probe: Uint8Array | undefined;
        if (v.rule.once) {
          // Backed out and carrying on: a new write, flushed and closed, reads back through QEMU.
          probe = new Uint8Array(4096).fill(0xab);
          await w.write(0, probe);
          await w.close();
        } else {
          await w.close().catch(() => undefined);
        }
        await io.close();
        const c = qemuCheck(f);
        expect([0, 3], `${event} ${v.label}: ${c.stdout}${c.stderr}`).toContain(c.status);
        expect(c.json?.corruptions ?? 0).toBe(0);
        if (probe) {
          const out = qemuIo(f, ['read -P 0xab 0 4k']);
          expect(out).toMatch(/read 4096\/4096 bytes/);
        }
      }
    });
  }
});
