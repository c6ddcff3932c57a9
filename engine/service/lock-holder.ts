// Who holds an image open (a running VM, usually) and how to stop it, in words for the wizard's
// safety step. Linux: /proc/locks (via the repair engine) and /proc/PID/{comm,cmdline}.
import { readFile, readdir, stat, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { locksOn } from '../repair/refusals.js';

export interface HolderInfo {
  locked: boolean;
  /** e.g. "qemu-system-x86_64 (pid 1234, VM 'web1')". */
  holder?: string;
  /** One paragraph: what holds it and how to stop it, or that nothing does. */
  detail: string;
}

async function procText(pid: number, file: string): Promise<string | undefined> {
  try {
    return await readFile(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
}

/** The VM name QEMU was started with (-name NAME or -name guest=NAME,...), when there is one. */
export function vmNameOf(cmdline: string): string | undefined {
  const args = cmdline.split('\0');
  const i = args.indexOf('-name');
  const v = i >= 0 ? args[i + 1] : undefined;
  if (!v) return undefined;
  const m = /(?:^|,)guest=([^,]+)/.exec(v);
  return m ? m[1] : v.split(',')[0];
}

export async function holderInfo(path: string): Promise<HolderInfo> {
  const locks = await locksOn(path).catch(() => []);
  if (locks.length === 0) return { locked: false, detail: 'No other program has this image open.' };
  let pids = [...new Set(locks.map((l) => l.pid).filter((p) => p > 0))];
  // QEMU's OFD locks show no pid (-1): find who has the file open instead.
  if (pids.length === 0) pids = await openers(path);
  const parts: string[] = [];
  const how: string[] = [];
  for (const pid of pids) {
    const comm = (await procText(pid, 'comm'))?.trim() ?? 'a process';
    const vm = vmNameOf((await procText(pid, 'cmdline')) ?? '');
    parts.push(`${comm} (pid ${pid}${vm ? `, VM '${vm}'` : ''})`);
    if (vm) how.push(`shut the virtual machine down from inside the guest or with: virsh shutdown ${vm}`);
    else if (/qemu/i.test(comm))
      how.push(
        `shut the virtual machine down from inside the guest, or quit QEMU (monitor command quit, or kill ${pid} once the guest is shut down)`,
      );
    else how.push(`close the program that has it open (kill ${pid} as a last resort)`);
  }
  const holder = parts.length ? parts.join(', ') : 'another process (its id is hidden from us)';
  return {
    locked: true,
    holder,
    detail:
      `This image is in use by ${holder}. Repairing it now could destroy data the running program writes at the same time. ` +
      `To go on: ${[...new Set(how)].join('; ') || 'stop the program that has it open'}, then check again.`,
  };
}

/** Processes with `path` open (through /proc/PID/fd), other than this one; bounded. */
export async function openers(path: string): Promise<number[]> {
  const target = await stat(path);
  const out: number[] = [];
  let procs: string[];
  try {
    procs = (await readdir('/proc')).filter((n) => /^\d+$/.test(n));
  } catch {
    return out;
  }
  for (const p of procs.slice(0, 10000)) {
    const pid = Number(p);
    if (pid === process.pid) continue;
    const fds = await readdir(`/proc/${p}/fd`).catch(() => [] as string[]);
    for (const fd of fds.slice(0, 4096)) {
      const st = await stat(`/proc/${p}/fd/${fd}`).catch(() => undefined);
      if (st && st.ino === target.ino && st.dev === target.dev) {
        out.push(pid);
        break;
      }
    }
  }
  return out;
}

/** Bytes a copy of `path` takes (its allocated blocks) and bytes free on its file system. */
export async function spaceFor(path: string): Promise<{ needed: number; free?: number }> {
  const st = await stat(path);
  const needed = Math.min(st.size, st.blocks * 512);
  try {
    const fs = await statfs(dirname(path));
    return { needed, free: fs.bavail * fs.bsize };
  } catch {
    return { needed };
  }
}
