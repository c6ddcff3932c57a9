/**
 * The engine host: an Electron utility process that runs the service, so a hostile image can
 * crash or stall this process but never the window or main. It reads only files main granted
 * (dialog, drop, association), the bundled samples and the recent list it keeps in userData.
 * argv: <userData dir> <samples dir>
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ServerMessage } from '../engine/contract/contract.js';
import { ContractError } from '../engine/contract/errors.js';
import { RecentStore, type RecentItem } from '../engine/service/recent.js';
import { Service } from '../engine/service/service.js';
import { listSamples } from '../engine/service/samples.js';
import type { HostInbound } from './bridge.js';

export type HostOutbound =
  | ServerMessage
  | { t: 'recent'; items: Array<{ id: string; name: string; location?: string }> };

async function main(): Promise<void> {
  const [userData = '.', samplesDir = ''] = process.argv.slice(2);
  const port = process.parentPort;
  const recentFile = join(userData, 'recent.json');
  const post = (m: HostOutbound): void => port.postMessage(m);
  let initial: RecentItem[] = [];
  try {
    initial = JSON.parse(readFileSync(recentFile, 'utf8')) as RecentItem[];
  } catch {
    initial = [];
  }
  const publish = (items: RecentItem[]): void => {
    post({
      t: 'recent',
      items: items.map(({ id, name, location }) => (location === undefined ? { id, name } : { id, name, location })),
    });
  };
  const recent = new RecentStore(initial, (items) => {
    try {
      mkdirSync(dirname(recentFile), { recursive: true });
      writeFileSync(recentFile, JSON.stringify(items, null, 1));
    } catch {
      // The list is a convenience; failing to save it must not fail an open.
    }
    publish(items);
  });
  const grants = new Map<string, { path: string; name: string }>();
  const samples = await listSamples(samplesDir);
  const service = new Service({
    kind: 'electron',
    samples: [...samples.keys()],
    recent,
    resolve: async (ref) => {
      if (ref.kind === 'granted') {
        const g = grants.get(ref.id);
        if (!g) throw new ContractError('not-found', 'unknown file grant', { field: 'args.ref.id', value: ref.id });
        return g;
      }
      if (ref.kind === 'recent') {
        const r = recent.find(ref.id);
        if (!r) throw new ContractError('not-found', 'no such recent image', { field: 'args.ref.id', value: ref.id });
        if (
          !(await stat(r.path).then(
            (s) => s.isFile(),
            () => false,
          ))
        )
          throw new ContractError('not-found', `${r.name} is no longer at ${r.location ?? 'its place'}`);
        return { path: r.path, name: r.name };
      }
      if (ref.kind === 'sample') {
        const p = samples.get(ref.name);
        if (!p) throw new ContractError('not-found', `no bundled sample named ${ref.name}`);
        return { path: p, name: ref.name };
      }
      throw new ContractError('not-available', `opening by ${ref.kind} goes through the main process`);
    },
  });
  const conn = service.connect((m) => post(m));
  port.on('message', (e: { data: HostInbound }) => {
    const m = e.data;
    if (m.t === 'grant') grants.set(m.id, { path: m.path, name: m.name });
    else if (m.t === 'client') conn.receive(m.msg);
  });
  publish(recent.all());
}

void main();
