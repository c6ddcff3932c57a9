/**
 * WebSocket framing for the contract's envelopes. Messages without typed arrays go as JSON text;
 * messages carrying typed arrays (role maps, hex bytes) go as one binary frame:
 *
 *   "Q2DB" | u32 LE json length | json (utf-8) | zero pad to 8 | buffer 0 | pad | buffer 1 | ...
 *
 * where each typed array in the JSON is replaced by {"$bin": i, "type": "Uint8Array", "length": n}.
 * A 16.8 M-cluster role map thus travels as 16.8 MB, not as an 80 MB JSON array. Pure module.
 */
const MAGIC = 0x42443251; // "Q2DB" read as little-endian u32
const TYPES = {
  Uint8Array,
  Int8Array,
  Uint16Array,
  Int16Array,
  Uint32Array,
  Int32Array,
  Float32Array,
  Float64Array,
} as const;
type TypeName = keyof typeof TYPES;
type AnyTyped = InstanceType<(typeof TYPES)[TypeName]>;

const typeName = (v: unknown): TypeName | undefined => {
  if (!ArrayBuffer.isView(v) || v instanceof DataView) return undefined;
  const n = (v as AnyTyped).constructor.name;
  if (n === 'Buffer') return 'Uint8Array';
  return n in TYPES ? (n as TypeName) : undefined;
};

const align8 = (n: number): number => (n + 7) & ~7;

/** Encode a message: a string (JSON) or a Uint8Array (binary frame). */
export function encodeMessage(msg: unknown): string | Uint8Array<ArrayBuffer> {
  const bins: AnyTyped[] = [];
  const json = JSON.stringify(msg, function (this: unknown, _key, value: unknown) {
    // JSON.stringify hands typed arrays to the replacer before serialising them.
    const holder = this as Record<string, unknown>;
    const raw = holder[_key];
    const t = typeName(raw);
    if (t) {
      bins.push(raw as AnyTyped);
      return { $bin: bins.length - 1, type: t, length: (raw as AnyTyped).length };
    }
    return value;
  });
  if (bins.length === 0) return json;
  const head = new TextEncoder().encode(json);
  let size = align8(8 + head.length);
  const offsets: number[] = [];
  for (const b of bins) {
    offsets.push(size);
    size = align8(size + b.byteLength);
  }
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MAGIC, true);
  dv.setUint32(4, head.length, true);
  out.set(head, 8);
  bins.forEach((b, i) => out.set(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), offsets[i]!));
  return out;
}

/** Decode what encodeMessage produced (text or binary). Throws on malformed frames. */
export function decodeMessage(data: string | ArrayBuffer | Uint8Array): unknown {
  if (typeof data === 'string') return JSON.parse(data);
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes.length < 8) throw new Error('binary frame too short');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== MAGIC) throw new Error('binary frame: bad magic');
  const jsonLen = dv.getUint32(4, true);
  if (8 + jsonLen > bytes.length) throw new Error('binary frame: JSON length beyond frame');
  const head = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + jsonLen))) as unknown;
  let pos = align8(8 + jsonLen);
  const revive = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(revive);
    if (typeof v !== 'object' || v === null) return v;
    const o = v as Record<string, unknown>;
    if (typeof o.$bin === 'number' && typeof o.type === 'string' && typeof o.length === 'number' && o.type in TYPES) {
      const Ctor = TYPES[o.type as TypeName];
      const byteLength = o.length * Ctor.BYTES_PER_ELEMENT;
      if (!Number.isSafeInteger(byteLength) || byteLength < 0 || pos + byteLength > bytes.length)
        throw new Error('binary frame: buffer beyond frame');
      // A view into the frame when its alignment allows (no copy of a 16 MB role map); else a copy.
      const at = bytes.byteOffset + pos;
      const arr =
        at % Ctor.BYTES_PER_ELEMENT === 0
          ? new Ctor(bytes.buffer as ArrayBuffer, at, o.length)
          : new Ctor(bytes.slice(pos, pos + byteLength).buffer, 0, o.length);
      pos = align8(pos + byteLength);
      return arr;
    }
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(o)) out[k] = revive(x);
    return out;
  };
  // Buffers were laid out in replacer order, which is JSON document order: revive in the same order.
  return revive(head);
}
