/** "1.2 GiB of 1 TiB · 310 MiB/s · about 58 min left": what a long job has done and has left. */
import { formatBytes, formatSeconds } from '../../../engine/contract/units.js';

export function progressText(fraction: number, totalBytes: number | undefined, elapsedMs: number): string {
  const parts: string[] = [];
  const secs = elapsedMs / 1000;
  const f = Math.min(1, Math.max(0, fraction));
  if (totalBytes !== undefined && totalBytes > 0) {
    const done = f * totalBytes;
    parts.push(`${formatBytes(Math.round(done))} of ${formatBytes(totalBytes)}`);
    if (secs >= 1 && done > 0) parts.push(`${formatBytes(Math.round(done / secs))}/s`);
  } else {
    parts.push(`${Math.round(f * 100)} %`);
  }
  if (secs >= 1 && f > 0.01 && f < 1) parts.push(`about ${formatSeconds(Math.max(1, (secs * (1 - f)) / f))} left`);
  else if (secs >= 1) parts.push(`${formatSeconds(secs)} so far`);
  return parts.join(' · ');
}
