/** Refcount block entries of every width (refcount_order 0..6), big-endian for 16..64 bits. */

export function getRefcount(block: Uint8Array, index: number, order: number): number {
  switch (order) {
    case 0:
      return (block[index >>> 3]! >>> (index & 7)) & 1;
    case 1:
      return (block[index >>> 2]! >>> (2 * (index & 3))) & 3;
    case 2:
      return (block[index >>> 1]! >>> (4 * (index & 1))) & 15;
    case 3:
      return block[index]!;
    case 4:
      return (block[2 * index]! << 8) | block[2 * index + 1]!;
    case 5: {
      const o = 4 * index;
      return ((block[o]! << 24) >>> 0) + ((block[o + 1]! << 16) | (block[o + 2]! << 8) | block[o + 3]!);
    }
    default: {
      const o = 8 * index;
      const hi = ((block[o]! << 24) >>> 0) + ((block[o + 1]! << 16) | (block[o + 2]! << 8) | block[o + 3]!);
      const lo = ((block[o + 4]! << 24) >>> 0) + ((block[o + 5]! << 16) | (block[o + 6]! << 8) | block[o + 7]!);
      return hi * 0x1_0000_0000 + lo; // exact below 2^53; larger refcounts are absurd anyway
    }
  }
}

export function setRefcount(block: Uint8Array, index: number, order: number, value: number): void {
  switch (order) {
    case 0:
    case 1:
    case 2: {
      const bits = 1 << order;
      const per = 8 >>> order;
      const byte = Math.floor(index / per);
      const shift = bits * (index % per);
      const mask = ((1 << bits) - 1) << shift;
      block[byte] = (block[byte]! & ~mask) | ((value << shift) & mask);
      return;
    }
    case 3:
      block[index] = value;
      return;
    case 4:
      block[2 * index] = value >>> 8;
      block[2 * index + 1] = value & 0xff;
      return;
    case 5: {
      const o = 4 * index;
      block[o] = value >>> 24;
      block[o + 1] = (value >>> 16) & 0xff;
      block[o + 2] = (value >>> 8) & 0xff;
      block[o + 3] = value & 0xff;
      return;
    }
    default: {
      const o = 8 * index;
      const hi = Math.floor(value / 0x1_0000_0000);
      const lo = value >>> 0;
      block[o] = hi >>> 24;
      block[o + 1] = (hi >>> 16) & 0xff;
      block[o + 2] = (hi >>> 8) & 0xff;
      block[o + 3] = hi & 0xff;
      block[o + 4] = lo >>> 24;
      block[o + 5] = (lo >>> 16) & 0xff;
      block[o + 6] = (lo >>> 8) & 0xff;
      block[o + 7] = lo & 0xff;
    }
  }
}

/** Largest refcount a width can hold. */
export function maxRefcount(order: number): number {
  return 2 ** (2 ** order) - 1;
}

/** Decode the first `count` refcounts of a block into `out` (one pass over the block, any width). */
export function getRefcounts(
  block: Uint8Array,
  order: number,
  out: Float64Array | Uint32Array | Uint16Array | Uint8Array,
  count: number,
): void {
  switch (order) {
    case 4:
      for (let j = 0; j < count; j++) out[j] = (block[2 * j]! << 8) | block[2 * j + 1]!;
      return;
    case 3:
      for (let j = 0; j < count; j++) out[j] = block[j]!;
      return;
    case 5:
      for (let j = 0; j < count; j++) {
        const o = 4 * j;
        out[j] = ((block[o]! << 24) >>> 0) + ((block[o + 1]! << 16) | (block[o + 2]! << 8) | block[o + 3]!);
      }
      return;
    case 6:
      for (let j = 0; j < count; j++) {
        const o = 8 * j;
        const hi = ((block[o]! << 24) >>> 0) + ((block[o + 1]! << 16) | (block[o + 2]! << 8) | block[o + 3]!);
        const lo = ((block[o + 4]! << 24) >>> 0) + ((block[o + 5]! << 16) | (block[o + 6]! << 8) | block[o + 7]!);
        out[j] = hi * 0x1_0000_0000 + lo;
      }
      return;
    default: {
      const bits = 1 << order;
      const per = 8 >>> order;
      const mask = (1 << bits) - 1;
      for (let j = 0; j < count; j++) out[j] = (block[Math.floor(j / per)]! >>> (bits * (j % per))) & mask;
    }
  }
}
