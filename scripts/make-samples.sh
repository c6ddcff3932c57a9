#!/bin/sh
# Make the sample images bundled with the app (resources/samples/), with qemu-img and qemu-io:
#  - sample-snapshots.qcow2: clean, 4 KiB clusters, data, a compressed cluster, zeroes, two snapshots
#  - sample-damaged.qcow2:   the same kind of image with one leaked cluster (an L2 entry cleared)
#                            and one cluster referenced twice with refcount 1 (an L2 entry redirected)
# Requires qemu-img, qemu-io and python3 (for the byte patches). Deterministic except timestamps.
set -eu
out=${1:-resources/samples}
mkdir -p "$out"
snap="$out/sample-snapshots.qcow2"
dmg="$out/sample-damaged.qcow2"
rm -f "$snap" "$dmg"

qemu-img create -q -f qcow2 -o cluster_size=4096 "$snap" 32M
qemu-io -f qcow2 -c 'write -P 0x11 0 96k' -c 'write -P 0x22 1M 64k' -c 'write -c -P 0x33 2M 4k' \
  -c 'write -z 3M 16k' -c 'write -P 0x44 8M 32k' "$snap" >/dev/null
qemu-img snapshot -c installed "$snap"
qemu-io -f qcow2 -c 'write -P 0x55 0 32k' -c 'write -P 0x66 16M 48k' "$snap" >/dev/null
qemu-img snapshot -c updated "$snap"
qemu-io -f qcow2 -c 'write -P 0x77 4k 8k' "$snap" >/dev/null

qemu-img create -q -f qcow2 -o cluster_size=4096 "$dmg" 16M
qemu-io -f qcow2 -c 'write -P 0x11 0 64k' -c 'write -P 0x22 4M 32k' "$dmg" >/dev/null
python3 - "$dmg" <<'PY'
import struct, sys
path = sys.argv[1]
with open(path, 'r+b') as f:
    h = f.read(72)
    l1_off = struct.unpack('>Q', h[40:48])[0]
    f.seek(l1_off)
    l2_off = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
    def entry(i):
        f.seek(l2_off + 8 * i)
        return struct.unpack('>Q', f.read(8))[0]
    def put(i, v):
        f.seek(l2_off + 8 * i)
        f.write(struct.pack('>Q', v))
    put(3, 0)            # guest cluster 3's data cluster is now referenced by nobody: a leak
    put(5, entry(4))     # guest cluster 5 now shares guest cluster 4's data cluster: refcount 1, 2 references
PY
qemu-img check "$snap" >/dev/null
qemu-img check "$dmg" >/dev/null 2>&1 && { echo "damaged sample is not damaged" >&2; exit 1; } || true
ls -l "$snap" "$dmg"
