// Timing one command as a user runs it: wall time by bash's `time` right around the command (timed
// from here, noticing the child's exit adds a few ms to both tools), CPU time (user+sys, ms
// resolution) by bash's `times`. On a shared machine CPU time is the steadier figure.
import { spawnSync } from 'node:child_process';

export interface Timing {
  ms: number;
  cpuMs: number;
  status: number;
}

const SCRIPT = 'TIMEFORMAT=__WALL__%3R; time "$@" >/dev/null 2>&1; rc=$?; times >&2; exit $rc';

function seconds(m: string): number {
  const x = /(\d+)m([\d.]+)s/.exec(m);
  return x ? Number(x[1]) * 60 + Number(x[2]) : Number.NaN;
}

export function timeCommand(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Timing {
  const r = spawnSync('/bin/bash', ['-c', SCRIPT, 'bash', cmd, ...args], {
    encoding: 'utf8',
    env: env ?? process.env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const wall = /__WALL__([\d.]+)/.exec(r.stderr);
  // `times`: the shell's own user/sys, then its children's.
  const lines = r.stderr.trim().split('\n').slice(-1)[0]?.split(' ') ?? [];
  return {
    ms: wall ? Number(wall[1]) * 1000 : Number.NaN,
    cpuMs: (seconds(lines[0] ?? '') + seconds(lines[1] ?? '')) * 1000,
    status: r.status ?? -1,
  };
}

/** Run each job `runs` times, taking turns; the best wall and best CPU time of each. */
export function bestOf(
  runs: number,
  jobs: Array<{ run: () => Timing; before?: () => void }>,
): Array<{ ms: number; cpuMs: number; statuses: number[] }> {
  const out = jobs.map(() => ({ ms: Infinity, cpuMs: Infinity, statuses: [] as number[] }));
  for (let i = 0; i < runs; i++)
    jobs.forEach((j, k) => {
      j.before?.();
      const t = j.run();
      out[k]!.ms = Math.min(out[k]!.ms, t.ms);
      out[k]!.cpuMs = Math.min(out[k]!.cpuMs, t.cpuMs);
      out[k]!.statuses.push(t.status);
    });
  return out;
}

export const ratio = (a: number, b: number): string => (Number.isFinite(a / b) ? (a / b).toFixed(2) : '—');
