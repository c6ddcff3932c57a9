// The LUKS v1 header QEMU stores inside an encrypted qcow2 (crypt_method 2). We decode and check
// it the way QEMU does when it opens the image without a key (qemu-img info), to show the same
// metadata; we never derive keys or decrypt anything. QEMU: crypto/block-luks.c.
import * as C from './constants.js';
import { u16, u32 } from './bytes.js';
import { Qcow2FormatError } from '../base/errors.js';

export interface LuksSlot {
  active: boolean;
  /** Key material offset in bytes from the start of the LUKS area. */
  keyOffset: number;
  /** Only meaningful (and shown by QEMU) for active slots. */
  iters: number;
  stripes: number;
}

/** What `qemu-img info` shows under format-specific.data.encrypt for LUKS. */
export interface LuksInfo {
  cipherAlg: string;
  cipherMode: string;
  ivgenAlg: string;
  /** Only for the essiv IV generator. */
  ivgenHashAlg?: string;
  hashAlg: string;
  /** Bytes (payload_offset sectors * 512); informational inside qcow2. */
  payloadOffset: number;
  masterKeyIters: number;
  uuid: string;
  slots: LuksSlot[];
}

const CIPHER_SIZES: Record<string, Array<[number, string]>> = {
  aes: [
    [16, 'aes-128'],
    [24, 'aes-192'],
    [32, 'aes-256'],
  ],
  cast5: [[16, 'cast5-128']],
  serpent: [
    [16, 'serpent-128'],
    [24, 'serpent-192'],
    [32, 'serpent-256'],
  ],
  twofish: [
    [16, 'twofish-128'],
    [24, 'twofish-192'],
    [32, 'twofish-256'],
  ],
};
const CIPHER_MODES = ['ecb', 'cbc', 'xts', 'ctr'];
const HASH_DIGEST: Record<string, number> = {
  md5: 16,
  sha1: 20,
  sha224: 28,
  sha256: 32,
  sha384: 48,
  sha512: 64,
  ripemd160: 20,
};
const IVGENS = ['plain', 'plain64', 'essiv'];
const FAMILY_LABEL: Record<string, string> = { aes: 'AES', serpent: 'Serpent', twofish: 'Twofish' };

const fail = (reason: string, field: string, value: string | number): never => {
  throw new Qcow2FormatError(reason, field, value);
};

/** A NUL-terminated string field (latin1 bytes up to the first NUL). */
function cstr(buf: Uint8Array, off: number, len: number): string | undefined {
  let s = '';
  for (let i = 0; i < len; i++) {
    const b = buf[off + i]!;
    if (b === 0) return s;
    s += String.fromCharCode(b);
  }
  return undefined;
}

/**
 * Decode and check a LUKS header (`buf` holds at least its 592 bytes), in QEMU's order
 * (check_header, then parse_header) and with QEMU's messages.
 */
export function decodeLuksHeader(buf: Uint8Array): LuksInfo {
  if (buf.length < C.LUKS_HEADER_SIZE)
    fail('Request for data outside of extension header', 'luks', `${buf.length} bytes`);
  for (let i = 0; i < C.LUKS_MAGIC.length; i++)
    if (buf[C.LUKS.magic + i] !== C.LUKS_MAGIC[i])
      fail('Volume is not in LUKS format', 'luks.magic', hexBytes(buf, 0, 6));
  const version = u16(buf, C.LUKS.version);
  if (version !== C.LUKS_VERSION) fail(`LUKS version ${version} is not supported`, 'luks.version', version);
  const cipherName = cstr(buf, C.LUKS.cipherName, C.LUKS_STRING_LEN);
  if (cipherName === undefined)
    fail('LUKS header cipher name is not NUL terminated', 'luks.cipher_name', hexBytes(buf, C.LUKS.cipherName, 8));
  const modeSpec = cstr(buf, C.LUKS.cipherMode, C.LUKS_STRING_LEN);
  if (modeSpec === undefined)
    fail('LUKS header cipher mode is not NUL terminated', 'luks.cipher_mode', hexBytes(buf, C.LUKS.cipherMode, 8));
  const hashSpec = cstr(buf, C.LUKS.hashSpec, C.LUKS_STRING_LEN);
  if (hashSpec === undefined)
    fail('LUKS header hash spec is not NUL terminated', 'luks.hash_spec', hexBytes(buf, C.LUKS.hashSpec, 8));

  const headerSectors = C.LUKS_KEY_SLOT_OFFSET / C.LUKS_SECTOR_SIZE;
  const payloadSectors = u32(buf, C.LUKS.payloadOffset);
  if (payloadSectors < headerSectors)
    fail('LUKS payload is overlapping with the header', 'luks.payload_offset', payloadSectors);
  const masterKeyIters = u32(buf, C.LUKS.masterKeyIterations);
  if (masterKeyIters === 0) fail('LUKS key iteration count is zero', 'luks.master_key_iterations', 0);
  const keyBytes = u32(buf, C.LUKS.keyBytes);

  const slots: LuksSlot[] = [];
  const raw: Array<{ active: number; iters: number; start: number; stripes: number }> = [];
  for (let i = 0; i < C.LUKS_KEY_SLOTS; i++) {
    const o = C.LUKS.keySlots + i * C.LUKS_KEY_SLOT_SIZE;
    raw.push({ active: u32(buf, o), iters: u32(buf, o + 4), start: u32(buf, o + 40), stripes: u32(buf, o + 44) });
  }
  // Key material length in sectors, aligned to the 4 KiB header: 32-bit arithmetic as QEMU's.
  const lenSectors = (stripes: number): number => {
    const sectors = Math.ceil((keyBytes * stripes) / C.LUKS_SECTOR_SIZE);
    return (Math.ceil(sectors / headerSectors) * headerSectors) % 2 ** 32;
  };
  for (let i = 0; i < C.LUKS_KEY_SLOTS; i++) {
    const s = raw[i]!;
    const f = `luks.key_slot[${i}]`;
    if (s.stripes !== 4000)
      fail(`Keyslot ${i} is corrupted (stripes ${s.stripes | 0} != 4000)`, `${f}.stripes`, s.stripes);
    if (s.active !== C.LUKS_KEY_SLOT_DISABLED && s.active !== C.LUKS_KEY_SLOT_ENABLED)
      fail(`Keyslot ${i} state (active/disable) is corrupted`, `${f}.active`, `0x${s.active.toString(16)}`);
    if (s.active === C.LUKS_KEY_SLOT_ENABLED && s.iters === 0)
      fail(`Keyslot ${i} iteration count is zero`, `${f}.iterations`, 0);
    if (s.start < headerSectors) fail(`Keyslot ${i} is overlapping with the LUKS header`, `${f}.key_offset`, s.start);
    const len1 = lenSectors(s.stripes);
    if ((s.start + len1) >>> 0 > payloadSectors)
      fail(`Keyslot ${i} is overlapping with the encrypted payload`, `${f}.key_offset`, s.start);
    for (let j = i + 1; j < C.LUKS_KEY_SLOTS; j++) {
      const t = raw[j]!;
      const len2 = lenSectors(t.stripes);
      if ((s.start + len1) >>> 0 > t.start && (t.start + len2) >>> 0 > s.start)
        fail(`Keyslots ${i} and ${j} are overlapping in the header`, `luks.key_slot[${j}].key_offset`, t.start);
    }
    slots.push({
      active: s.active === C.LUKS_KEY_SLOT_ENABLED,
      keyOffset: s.start * C.LUKS_SECTOR_SIZE,
      iters: s.iters,
      stripes: s.stripes,
    });
  }

  // parse_header: "<mode>-<ivgen>[:<ivhash>]".
  const dash = modeSpec!.indexOf('-');
  if (dash < 0) fail(`Unexpected cipher mode string format '${modeSpec}'`, 'luks.cipher_mode', modeSpec!);
  const cipherMode = modeSpec!.slice(0, dash);
  let ivgenName = modeSpec!.slice(dash + 1);
  let ivgenHash: string | undefined;
  const colon = ivgenName.indexOf(':');
  if (colon >= 0) {
    ivgenHash = ivgenName.slice(colon + 1);
    ivgenName = ivgenName.slice(0, colon);
    if (!(ivgenHash in HASH_DIGEST)) fail(`Hash algorithm '${ivgenHash}' not supported`, 'luks.cipher_mode', modeSpec!);
  }
  if (!CIPHER_MODES.includes(cipherMode))
    fail(`Cipher mode '${cipherMode}' not supported`, 'luks.cipher_mode', modeSpec!);
  const algKeyBytes = cipherMode === 'xts' ? Math.floor(keyBytes / 2) : keyBytes;
  const cipherAlg = CIPHER_SIZES[cipherName!]?.find(([n]) => n === algKeyBytes)?.[1];
  if (!cipherAlg)
    fail(
      `Algorithm '${cipherName}' with key size ${algKeyBytes | 0} bytes not supported`,
      'luks.cipher_name',
      cipherName!,
    );
  if (!(hashSpec! in HASH_DIGEST)) fail(`Hash algorithm '${hashSpec}' not supported`, 'luks.hash_spec', hashSpec!);
  if (!IVGENS.includes(ivgenName)) fail(`IV generator '${ivgenName}' not supported`, 'luks.cipher_mode', modeSpec!);
  if (ivgenName === 'essiv') {
    if (ivgenHash === undefined) fail('Missing IV generator hash specification', 'luks.cipher_mode', modeSpec!);
    checkEssivCipher(cipherName!, cipherAlg!, HASH_DIGEST[ivgenHash!]!);
  }

  let uuid = '';
  for (let i = 0; i < C.LUKS_UUID_LEN && buf[C.LUKS.uuid + i] !== 0; i++)
    uuid += String.fromCharCode(buf[C.LUKS.uuid + i]!);

  const info: LuksInfo = {
    cipherAlg: cipherAlg!,
    cipherMode,
    ivgenAlg: ivgenName,
    hashAlg: hashSpec!,
    payloadOffset: payloadSectors * C.LUKS_SECTOR_SIZE,
    masterKeyIters,
    uuid,
    slots,
  };
  if (ivgenName === 'essiv') info.ivgenHashAlg = ivgenHash!;
  return info;
}

/** dm-crypt's ESSIV quirk as QEMU applies it: the IV cipher's key length must match the digest. */
function checkEssivCipher(family: string, cipherAlg: string, digestLen: number): void {
  const keyLen = CIPHER_SIZES[family]!.find(([, n]) => n === cipherAlg)![0];
  if (digestLen === keyLen) return;
  const label = FAMILY_LABEL[family];
  if (!label) fail(`Cipher ${cipherAlg} not supported with essiv`, 'luks.cipher_mode', cipherAlg);
  if (!CIPHER_SIZES[family]!.some(([n]) => n === digestLen))
    fail(`No ${label} cipher with key size ${digestLen} available`, 'luks.cipher_mode', cipherAlg);
}

function hexBytes(buf: Uint8Array, off: number, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += (buf[off + i] ?? 0).toString(16).padStart(2, '0');
  return s;
}
