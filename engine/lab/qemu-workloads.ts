// Workloads for real QEMU: each exercises one metadata path of QEMU's qcow2 driver. A workload
// makes its image (not logged), then runs steps through qemu-io and qemu-img with the image file
// under QEMU's blklogwrites driver, so every write, flush, discard and write-zeroes QEMU's qcow2
// code sends to the file is logged (engine/lab/qemu-lab.ts runs them, engine/lab/replay.ts judges).
// Images stay small (the lab compares the whole guest disk of every crash state).
// Compressed writes go only to clusters not yet allocated: QEMU 7.2 refuses a compressed write over
// an allocated cluster with EIO, with or without blklogwrites. `commit` logs the image committed
// into: it is the overlay's backing file, opened through a json: backing name that stacks
// blklogwrites under it (engine/lab/qemu-image-opts.ts).

export interface QemuStep {
  tool: 'qemu-io' | 'qemu-img';
  /** qemu-io: its commands (-c each). qemu-img: the arguments before `--image-opts OPTS` (and `after` behind it). */
  args: string[];
  after?: string[];
  /** Extra qcow2 options on this step's --image-opts (e.g. discard=unmap). */
  opts?: string;
  /**
   * qemu-img only: run on the overlay (top.qcow2, with `opts`), whose backing name is set first
   * to the logged image under blklogwrites.
   */
  overlay?: boolean;
}

export interface QemuWorkload {
  name: string;
  what: string;
  /** qemu-img create -o options, and size. */
  create: { size: string; options: string };
  /** Make the backing file first (relative name, qcow2) with these qemu-io commands. */
  backing?: { size: string; options: string; io: string[] };
  /** qemu-io commands run on the image before logging starts. */
  setup?: string[];
  /**
   * QEMU's requests overlap, so the log's order and allocations vary from run to run: an injected
   * fault counts as reached only where a step reports it (engine/lab/qemu-inject.ts).
   */
  overlapping?: boolean;
  /** After setup, an overlay top.qcow2 over the image, written with these qemu-io commands (not logged). */
  overlay?: { options: string; io: string[] };
  steps: QemuStep[];
}

const io = (...args: string[]): QemuStep => ({ tool: 'qemu-io', args });
const img = (args: string[], after: string[] = []): QemuStep => ({ tool: 'qemu-img', args, after });
// Compressed clusters of a 0x5? pattern take a few dozen bytes: several share one host cluster.
// One cluster per command: QEMU writes the clusters of one compressed request in parallel, and the
// error paths (lab --inject) compare runs, which must then repeat themselves.
const COMPRESSED = [
  'write -c -P 0x5a 0 4k',
  'write -c -P 0x5a 4k 4k',
  'write -c -P 0x5a 8k 4k',
  'write -c -P 0x5a 12k 4k',
  'write -c -P 0x5b 2044k 4k',
  'write -c -P 0x5b 2048k 4k',
  'flush',
  'write -c -P 0x5c 64k 4k',
  'write -P 0x5d 4k 4k',
  'write -P 0x5e 8704 512',
  'flush',
  'discard 12k 4k',
  'write -c -P 0x5f 128k 4k',
  'write -c -P 0x5f 132k 4k',
];

export function qemuWorkloads(): QemuWorkload[] {
  return [
    {
      name: 'alloc-l2',
      what: 'allocating writes across four L2 tables',
      create: { size: '8M', options: 'cluster_size=4096' },
      steps: [
        io('write -P 0x11 0 64k', 'write -P 0x12 2052k 8k', 'flush', 'write -P 0x13 4M 12k', 'write -P 0x14 8188k 4k'),
      ],
    },
    {
      name: 'partial',
      what: 'partial-cluster writes (COW from nothing and in place)',
      create: { size: '8M', options: 'cluster_size=65536' },
      setup: ['write -P 0x21 64k 64k'],
      steps: [
        io('write -P 0x22 3k 1k', 'write -P 0x23 100k 512', 'flush', 'write -P 0x24 1023k 3k', 'write -P 0x25 70k 2k'),
      ],
    },
    {
      name: 'cow-backing',
      what: 'copy-on-write over a backing file',
      backing: { size: '8M', options: 'cluster_size=4096', io: ['write -P 0x31 0 1M'] },
      create: { size: '8M', options: 'cluster_size=65536' },
      steps: [io('write -P 0x32 1k 1k', 'write -P 0x33 130k 6k', 'flush', 'write -P 0x34 300k 512')],
    },
    {
      name: 'discard-zero',
      what: 'discard and write-zeroes (discard=ignore)',
      create: { size: '8M', options: 'cluster_size=4096' },
      setup: ['write -P 0x41 0 512k'],
      steps: [
        io('discard 0 64k', 'write -z 64k 32k', 'write -P 0x42 96k 4k', 'flush', 'write -z -u 128k 64k', 'write 4k 4k'),
      ],
    },
    {
      name: 'discard-unmap',
      what: 'discard and write-zeroes with discard=unmap',
      create: { size: '8M', options: 'cluster_size=4096' },
      setup: ['write -P 0x51 0 512k'],
      steps: [
        {
          ...io(
            'discard 0 64k',
            'write -z -u 64k 32k',
            'write -P 0x52 1M 8k',
            'flush',
            'discard 256k 64k',
            'write -P 0x53 0 8k',
          ),
          opts: 'discard=unmap',
        },
      ],
    },
    {
      name: 'compressed-writes',
      what: 'compressed writes sharing host clusters, across an L2 boundary; overwritten, COW, discarded',
      create: { size: '8M', options: 'cluster_size=4096' },
      setup: ['write -P 0x61 1M 8k'],
      steps: [io(...COMPRESSED)],
    },
    {
      name: 'resize-l1',
      what: 'L1 table growth (qemu-img resize), then writes in the new range',
      create: { size: '1M', options: 'cluster_size=512' },
      setup: ['write -P 0x71 0 4k'],
      steps: [img(['resize'], ['8M']), io('write -P 0x72 7M 2k', 'write -P 0x73 4k 1k')],
    },
    {
      name: 'reftable-grow',
      what: 'refcount-table growth (64-bit refcounts in 512-byte clusters)',
      create: { size: '8M', options: 'cluster_size=512,refcount_bits=64' },
      setup: ['write -P 0x81 0 1900k'],
      steps: [io('write -P 0x82 1900k 256k', 'flush', 'write -P 0x83 3M 64k')],
    },
    {
      name: 'refcount-bits',
      what: 'refcount-width change (qemu-img amend -o refcount_bits=4, then 64)',
      create: { size: '8M', options: 'cluster_size=4096' },
      setup: ['write -P 0x91 0 256k'],
      steps: [
        img(['amend', '-o', 'refcount_bits=4']),
        io('write -P 0x92 1M 8k'),
        img(['amend', '-o', 'refcount_bits=64']),
      ],
    },
    {
      name: 'snapshots',
      what: 'internal snapshot create, write, apply, delete',
      create: { size: '8M', options: 'cluster_size=4096' },
      setup: ['write -P 0xa1 0 64k'],
      steps: [
        img(['snapshot', '-c', 's1']),
        io('write -P 0xa2 4k 8k'),
        img(['snapshot', '-c', 's2']),
        img(['snapshot', '-a', 's1']),
        io('write -P 0xa3 0 2k'),
        img(['snapshot', '-d', 's1']),
        img(['snapshot', '-d', 's2']),
      ],
    },
    {
      name: 'bitmaps',
      what: 'persistent dirty bitmaps: add, writes that dirty it, remove',
      create: { size: '8M', options: 'cluster_size=4096' },
      setup: ['write -P 0xb1 0 64k'],
      steps: [img(['bitmap', '--add'], ['b0']), io('write -P 0xb2 1M 64k'), img(['bitmap', '--remove'], ['b0'])],
    },
    {
      name: 'rebase',
      what: 'rebase onto another backing file (copies the differing data in)',
      backing: { size: '8M', options: 'cluster_size=4096', io: ['write -P 0xc1 0 256k'] },
      create: { size: '8M', options: 'cluster_size=4096' },
      setup: ['write -P 0xc2 8k 4k'],
      steps: [img(['rebase', '-b', '']), io('write -P 0xc3 512k 8k')],
    },
    {
      name: 'commit',
      what: 'qemu-img commit of an overlay into the image (its backing file), then a write to it',
      create: { size: '8M', options: 'cluster_size=4096' },
      setup: ['write -P 0xe1 0 256k'],
      // qemu-img commit runs an active commit (QEMU's mirror job): several copies in flight.
      overlapping: true,
      overlay: {
        options: 'cluster_size=65536',
        io: ['write -P 0xe2 4k 8k', 'write -P 0xe3 1M 192k', 'write -P 0xe4 4092k 8k', 'write -z 128k 64k'],
      },
      steps: [
        { tool: 'qemu-img', args: ['commit'], overlay: true, opts: 'backing.read-only=off' },
        io('write -P 0xe5 8k 4k'),
      ],
    },
    {
      name: 'lazy-refcounts',
      what: 'lazy refcounts: the dirty bit, refcounts rebuilt on open',
      create: { size: '8M', options: 'cluster_size=4096,lazy_refcounts=on' },
      steps: [io('write -P 0xd1 0 64k', 'flush', 'write -P 0xd2 1M 16k', 'write -P 0xd3 2k 1k')],
    },
  ];
}
