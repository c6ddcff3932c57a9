// Clues that guest data gives about its own position: a GPT header records the LBA it sits at
// (MyLBA) and the LBA of its twin at the other end of the disk, and carries a CRC that rules out
// look-alikes. Finding one inside an L2 table's data places that table in the guest disk and
// bounds the disk size, without any metadata.
import { crc32 } from 'node:zlib';

const SIG = [0x45, 0x46, 0x49, 0x20, 0x50, 0x41, 0x52, 0x54]; // "EFI PART"

export interface GptClue {
  /** Byte offset of the header inside the buffer searched. */
  at: number;
  myLba: number;
  alternateLba: number;
}

function le32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

function le64(b: Uint8Array, o: number): number {
  return le32(b, o) + le32(b, o + 4) * 0x1_0000_0000;
}

/** GPT headers (signature + valid header CRC) at 512-byte boundaries of `buf`. */
export function findGptHeaders(buf: Uint8Array): GptClue[] {
  const out: GptClue[] = [];
  for (let s = 0; s + 512 <= buf.length; s += 512) {
    let ok = true;
    for (let k = 0; k < 8; k++)
      if (buf[s + k] !== SIG[k]) {
        ok = false;
        break;
      }
    if (!ok) continue;
    const size = le32(buf, s + 12);
    if (size < 92 || size > 512) continue;
    const hdr = buf.slice(s, s + size);
    const stored = le32(hdr, 16);
    hdr[16] = hdr[17] = hdr[18] = hdr[19] = 0;
    if (crc32(hdr) >>> 0 !== stored) continue;
    out.push({ at: s, myLba: le64(buf, s + 24), alternateLba: le64(buf, s + 32) });
  }
  return out;
}
