/** A share of a total in words that never lies by rounding: "<0.01 %", ">99.9 %", "100 %" only when all. */
export function shareText(n: number, total: number): string {
  if (total <= 0 || n <= 0) return '0 %';
  if (n >= total) return '100 %';
  const p = (100 * n) / total;
  if (p < 0.01) return '<0.01 %';
  if (p > 99.9) return '>99.9 %';
  return `${p.toFixed(p < 1 ? 2 : 1)} %`;
}
