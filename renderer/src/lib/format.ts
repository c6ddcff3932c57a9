/** Display helpers shared by the views. */
export function bytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v >= 100 || Number.isInteger(v) ? 0 : 1)} ${u[i]}`;
}

export const hex = (n: number): string => `0x${n.toString(16)}`;

export const count = (n: number): string => n.toLocaleString('en-US');
