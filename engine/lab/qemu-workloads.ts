// Workloads for real QEMU: each exercises one metadata path of QEMU's qcow2 driver. A workload
// makes its image (not logged), then runs steps through qemu-io and qemu-img with the image file
// under QEMU's blklogwrites driver, so every write, flush, discard and write-zeroes QEMU's qcow2
// code sends to the file is logged (engine/lab/qemu-lab.ts runs them, engine/lab/replay.ts judges).
// Images stay small (the lab compares the whole guest disk of every crash state).
// Not here: compressed writes. QEMU 7.2's blklogwrites fails them with EIO (a compressed cluster
// is written at byte granularity, the log takes whole sectors), so they cannot be logged. Nor can
// `qemu-img commit`: it reopens the backing file read-write, and blklogwrites cannot be reopened.

export interface QemuStep {
  tool: 'qemu-io' | 'qemu-img';
  /** qemu-io: its commands (-c each). qemu-img: the arguments before `--image-opts OPTS` (and `after` behind it). */
  args: string[];
  after?: string[];
  /** Extra qcow2 options on this step's --image-opts (e.g. discard=unmap). */
  opts?: string;
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
  steps: QemuStep[];
}

const io = (...args: string[]): QemuStep => ({ tool: 'qemu-io', args });
const img = (args: string[], after: string[] = []): QemuStep => ({ tool: 'qemu-img', args, after });

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
      name: 'lazy-refcounts',
      what: 'lazy refcounts: the dirty bit, refcounts rebuilt on open',
      create: { size: '8M', options: 'cluster_size=4096,lazy_refcounts=on' },
      steps: [io('write -P 0xd1 0 64k', 'flush', 'write -P 0xd2 1M 16k', 'write -P 0xd3 2k 1k')],
    },
  ];
}
