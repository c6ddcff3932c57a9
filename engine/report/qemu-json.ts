// QEMU prints its QAPI results (qemu-img info/check --output=json) by turning them into QObjects
// and pretty-printing those. In QEMU 7.2 a QDict is a 512-bucket hash table (qobject/qdict.c), so
// keys come out in bucket order, newest first within a bucket; the human form of format-specific
// data walks the same dicts. Reproducing that order makes our output byte-identical to qemu-img's.

/** A QObject-like value. Objects keep keys in QAPI visit (insertion) order; undefined = absent. */
export type QValue = string | number | bigint | boolean | QValue[] | QDict;
export interface QDict {
  [key: string]: QValue | undefined;
}

const BUCKETS = 512;

/** QEMU's tdb_hash of a key, reduced to its bucket. */
export function qdictBucket(key: string): number {
  const bytes = new TextEncoder().encode(key);
  let v = Math.imul(0x238f13af, bytes.length) >>> 0;
  for (let i = 0; i < bytes.length; i++) v = (v + ((bytes[i]! << ((i * 5) % 24)) >>> 0)) >>> 0;
  return ((Math.imul(1103515243, v) + 12345) >>> 0) % BUCKETS;
}

/** Keys of a dict in the order QEMU 7.2 iterates them. */
export function qdictKeys(d: QDict): string[] {
  const keys = Object.keys(d).filter((k) => d[k] !== undefined);
  const idx = new Map(keys.map((k, i) => [k, i]));
  // Later insertions go to the head of their bucket's list.
  return keys.sort((a, b) => qdictBucket(a) - qdictBucket(b) || idx.get(b)! - idx.get(a)!);
}

/** C strings end at the first NUL. */
const cString = (s: string): string => {
  const nul = s.indexOf('\0');
  return nul < 0 ? s : s.slice(0, nul);
};

function jsonString(s: string): string {
  let out = '"';
  for (const ch of cString(s)) {
    const cp = ch.codePointAt(0)!;
    switch (ch) {
      case '"':
        out += '\\"';
        break;
      case '\\':
        out += '\\\\';
        break;
      case '\b':
        out += '\\b';
        break;
      case '\f':
        out += '\\f';
        break;
      case '\n':
        out += '\\n';
        break;
      case '\r':
        out += '\\r';
        break;
      case '\t':
        out += '\\t';
        break;
      default:
        if (cp > 0xffff) {
          const hi = 0xd800 + ((cp - 0x10000) >> 10);
          const lo = 0xdc00 + ((cp - 0x10000) & 0x3ff);
          out += `\\u${hex4(hi)}\\u${hex4(lo)}`;
        } else if (cp < 0x20 || cp >= 0x7f) {
          // Lone surrogates cannot come out of a decoder; QEMU prints U+FFFD for invalid input.
          out += `\\u${hex4(cp >= 0xd800 && cp <= 0xdfff ? 0xfffd : cp)}`;
        } else {
          out += ch;
        }
    }
  }
  return `${out}"`;
}

const hex4 = (n: number): string => n.toString(16).toUpperCase().padStart(4, '0');

function scalar(v: string | number | bigint | boolean): string {
  if (typeof v === 'string') return jsonString(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return typeof v === 'bigint' ? v.toString() : String(Math.trunc(v));
}

/** qobject_to_json_pretty: 4-space indent, "key": value, empty containers still span lines. */
export function toQemuJson(v: QValue, indent = 0): string {
  const pad = (n: number): string => '    '.repeat(n);
  if (Array.isArray(v)) {
    const items = v.map((x) => `\n${pad(indent + 1)}${toQemuJson(x, indent + 1)}`);
    return `[${items.join(',')}\n${pad(indent)}]`;
  }
  if (typeof v === 'object') {
    const items = qdictKeys(v).map((k) => `\n${pad(indent + 1)}${jsonString(k)}: ${toQemuJson(v[k]!, indent + 1)}`);
    return `{${items.join(',')}\n${pad(indent)}}`;
  }
  return scalar(v);
}

/**
 * dump_qobject from block/qapi.c: the human form of format-specific data. Keys have '-' replaced
 * by ' '; list items are "[i]:"; composite values go on the following lines, one level deeper.
 */
export function dumpQemuHuman(v: QValue, indent: number): string {
  const pad = ' '.repeat(indent * 4);
  const composite = (x: QValue): boolean => typeof x === 'object' && typeof x !== 'bigint';
  const item = (label: string, x: QValue): string =>
    composite(x) ? `${pad}${label}:\n${dumpQemuHuman(x, indent + 1)}` : `${pad}${label}: ${humanScalar(x)}\n`;
  if (Array.isArray(v)) return v.map((x, i) => item(`[${i}]`, x)).join('');
  if (typeof v === 'object' && typeof v !== 'bigint')
    return qdictKeys(v)
      .map((k) => item(k.replace(/-/g, ' '), v[k]!))
      .join('');
  return humanScalar(v);
}

function humanScalar(v: QValue): string {
  if (typeof v === 'string') return cString(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') return String(Math.trunc(v));
  return '';
}

/**
 * QEMU's size_to_str: "%0.3g %sB" with binary suffixes, switching unit when the value reaches
 * 1000 of the smaller one (e.g. 420 KiB, 2.19 MiB, 0 B). Rounding is exact, as glibc's printf.
 */
export function sizeToStr(val: number | bigint): string {
  const suffixes = ['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei'];
  const n = typeof val === 'bigint' ? val : BigInt(Math.trunc(val));
  // frexp(val * 1.024) exponent e: 2^(e-1) <= val*1024/1000 < 2^e, i.e. 2^(e-1)*1000 <= val*1024.
  let e = 0;
  if (n > 0n) {
    e = 1;
    while ((1n << BigInt(e)) * 1000n <= n * 1024n) e++;
  }
  const i = Math.min(Math.trunc((e - 1) / 10), suffixes.length - 1);
  return `${formatG3(n, 1n << BigInt(i * 10))} ${suffixes[i]}B`;
}

/** printf("%0.3g", num/den) for non-negative integers num, den, with round-half-even. */
export function formatG3(num: bigint, den: bigint): string {
  if (num === 0n) return '0';
  // Decimal exponent X = floor(log10(num/den)).
  // num/den >= 10^k, for any integer k.
  const atLeast = (k: number): boolean => (k >= 0 ? num >= den * 10n ** BigInt(k) : num * 10n ** BigInt(-k) >= den);
  let x = 0;
  while (atLeast(x + 1)) x++;
  while (!atLeast(x)) x--;
  let m = roundScaled(num, den, 2 - x); // three significant digits
  if (m >= 1000n) {
    x += 1;
    m = roundScaled(num, den, 2 - x);
  }
  const digits = m.toString();
  if (x < -4 || x >= 3) {
    const mant = stripZeros(`${digits[0]}.${digits.slice(1)}`);
    return `${mant}e${x < 0 ? '-' : '+'}${String(Math.abs(x)).padStart(2, '0')}`;
  }
  // Fixed notation with 2 - x decimals.
  const decimals = 2 - x;
  const s = decimals > 0 ? digits.padStart(decimals + 1, '0') : digits + '0'.repeat(-decimals);
  const fixed = decimals > 0 ? `${s.slice(0, s.length - decimals)}.${s.slice(s.length - decimals)}` : s;
  return stripZeros(fixed);
}

/** round(num/den * 10^k) with ties to even. */
function roundScaled(num: bigint, den: bigint, k: number): bigint {
  const a = k >= 0 ? num * 10n ** BigInt(k) : num;
  const b = k >= 0 ? den : den * 10n ** BigInt(-k);
  const q = a / b;
  const r = a - q * b;
  if (r * 2n > b || (r * 2n === b && q % 2n === 1n)) return q + 1n;
  return q;
}

function stripZeros(s: string): string {
  if (!s.includes('.')) return s;
  return s.replace(/0+$/, '').replace(/\.$/, '');
}
