// `qcow2-doctor lab --record-log DIR`: our own writer's lab workloads as dm-log-writes logs, each
// with its base image, so anyone can replay and crash-test them (`lab --replay`, or the tools
// made for Linux's dm-log-writes).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { recordWorkload } from '../../lab/campaign.js';
import { encodeDmLog, sectorAlignedLog } from '../../lab/dm-log.js';
import { labWorkloads } from '../../lab/workloads.js';
import type { WriteOrdering } from '../../write/table-cache.js';

export async function recordLogs(dir: string, names: string[] | undefined, ordering: WriteOrdering): Promise<number> {
  mkdirSync(dir, { recursive: true });
  for (const wl of labWorkloads().filter((w) => !names?.length || names.includes(w.name))) {
    const rec = await recordWorkload(wl, ordering);
    const base = join(dir, `${wl.name}.base.qcow2`);
    const log = join(dir, `${wl.name}.log`);
    writeFileSync(base, rec.base);
    writeFileSync(log, encodeDmLog(await sectorAlignedLog(rec.base, rec.log)));
    process.stdout.write(`${wl.name}: ${rec.log.length} entries -> ${log} (base ${base})\n`);
  }
  return 0;
}
