/**
 * Engine sentences as the app shows them: `command` spans become code (no literal backticks on
 * screen), and raw byte counts get units ("2097152 bytes" reads "2 MiB").
 */
import { formatBytes } from '../../../engine/contract/units.js';

export interface TextPiece {
  code: boolean;
  text: string;
}

const RAW_BYTES = /\b(\d{5,}) bytes\b/g;

export function withUnits(text: string): string {
  return text.replace(RAW_BYTES, (_m, n: string) => formatBytes(Number(n)));
}

export function engineText(text: string): TextPiece[] {
  const out: TextPiece[] = [];
  const parts = text.split('`');
  // An odd number of backticks leaves the last one as it is.
  const paired = parts.length % 2 === 1;
  parts.forEach((p, i) => {
    const code = paired && i % 2 === 1;
    const t = code ? p : withUnits(p);
    if (!paired && i > 0) out.push({ code: false, text: '`' });
    if (t) out.push({ code, text: t });
  });
  return out;
}
