// A campaign worker: a process forked by the orchestrator (campaign.ts) that makes and judges the
// cases it is sent, one at a time, with our CLI run in-process (in-process.ts). It stays small (no
// disk-sized buffers), so the qemu-img processes it starts fork quickly.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Base } from './bases.js';
import { type Case, makeCase } from './cases.js';
import { inProcessCli } from './in-process.js';
import { type CaseResult, type Scratch, judgeCase } from './judge.js';
import type { FromWorker, ToWorker } from './protocol.js';
import { spawnerStarter } from './spawner-client.js';
import { type OurCli, ours, startProgramsWith } from './tools.js';
import { readTruth } from './truth.js';

/** A command the spawned runner would have killed (runAsync's limit): the case is judged again that way. */
const SPAWNED_LIMIT_MS = 120_000;

interface State {
  seed: number;
  bases: Base[];
  files: Map<Base, Uint8Array>;
  scratch: Scratch;
  keep?: string;
  cli: OurCli;
}

let state: State | undefined;

const send = (m: FromWorker): void => {
  if (process.connected) process.send?.(m);
};

function keepCase(s: State, c: Case, index: number, r: CaseResult): void {
  if (!s.keep || (r.falseClaims.length === 0 && r.lostVsQemu === 0 && r.notes.length === 0)) return;
  mkdirSync(s.keep, { recursive: true });
  const stem = join(s.keep, `seed${s.seed}-case${index}`);
  writeFileSync(`${stem}.qcow2`, c.bytes, { flag: 'wx' });
  writeFileSync(`${stem}.json`, `${JSON.stringify({ seed: s.seed, case: index, ...r }, null, 2)}\n`, { flag: 'wx' });
}

async function runCase(s: State, index: number, inProcess: boolean): Promise<CaseResult> {
  const c = makeCase(s.seed, index, s.bases, s.files);
  send({ type: 'started', index, base: c.base.name, kind: c.kind, what: c.what });
  let overtime = false;
  const timed: OurCli = async (args) => {
    const t0 = Date.now();
    const r = await s.cli(args);
    if (Date.now() - t0 > SPAWNED_LIMIT_MS) overtime = true;
    return r;
  };
  let r = await judgeCase(inProcess ? timed : ours, c.base, c, s.scratch, index);
  if (overtime) r = await judgeCase(ours, c.base, c, s.scratch, index);
  keepCase(s, c, index, r);
  return r;
}

async function onMessage(m: ToWorker): Promise<void> {
  if (m.type === 'init') {
    // Started first, while this process is small (every program is started through it).
    const spawner = spawnerStarter();
    startProgramsWith(spawner.start);
    process.once('disconnect', spawner.close);
    const bases = m.bases.map((b) => ({ ...b, truth: readTruth(b.truthFile) }));
    state = {
      seed: m.seed,
      bases,
      files: new Map(bases.map((b) => [b, new Uint8Array(readFileSync(b.image))])),
      scratch: m.scratch,
      keep: m.keep,
      cli: await inProcessCli(),
    };
    send({ type: 'ready' });
    return;
  }
  if (!state) throw new Error('a case before init');
  const result = await runCase(state, m.index, m.inProcess);
  send({ type: 'result', result, rss: process.memoryUsage.rss() });
}

// Interrupting the campaign is the orchestrator's business: it stops this worker and drops its case.
process.on('SIGINT', () => {});
process.on('message', (m: ToWorker) => {
  onMessage(m).catch((e: unknown) => {
    send({ type: 'error', message: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  });
});
