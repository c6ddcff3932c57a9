// Hostile requests for the serve contract: method names (real and not), arguments that are nearly
// valid (right keys, wrong types, values at the validators' limits, deep nesting, prototype keys),
// and binary frames made by the encoder and then damaged (lengths, magic, descriptors of arrays).
import fc from 'fast-check';
import { METHODS } from '../../../engine/contract/contract.js';
import { encodeMessage } from '../../../engine/contract/wire.js';
import type { ContractCase } from './targets.js';

const edgeNumber = fc.oneof(
  fc.integer(),
  fc.constantFrom(
    0,
    -1,
    1,
    2 ** 53,
    2 ** 53 + 2,
    -(2 ** 53),
    1e308,
    -0,
    0.5,
    2 ** 31,
    2 ** 32,
    1000,
    1001,
    2 * 1024 * 1024 + 1,
  ),
  fc.double(),
);
const edgeString = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.constantFrom(
    '',
    '..',
    '../../etc/passwd',
    '/abs',
    'a\u0000b',
    '%zz',
    '__proto__',
    'constructor',
    'x'.repeat(5000),
  ),
  fc.stringMatching(/^[A-Za-z0-9_-]{8,64}$/),
);
const scalar = fc.oneof(edgeNumber, edgeString, fc.boolean(), fc.constant(null));
const fileRef = fc.record(
  {
    kind: fc.oneof(fc.constantFrom('root', 'dialog', 'recent', 'granted', 'sample', 'sibling', 'inline'), edgeString),
    path: fc.oneof(edgeString, scalar),
    id: fc.oneof(edgeString, scalar),
    name: fc.oneof(edgeString, scalar),
    suffix: fc.oneof(edgeString, scalar),
  },
  { requiredKeys: ['kind'] },
);
const args = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.record(
    {
      handle: fc.oneof(edgeString, scalar),
      ref: fc.oneof(fileRef, scalar),
      refs: fc.array(fc.oneof(fileRef, scalar), { maxLength: 4 }),
      folder: fileRef,
      offset: edgeNumber,
      length: edgeNumber,
      limit: edgeNumber,
      cluster: edgeNumber,
      guestCluster: edgeNumber,
      mode: fc.oneof(fc.constantFrom('leaks', 'all'), edgeString),
      severity: fc.oneof(fc.constantFrom('error', 'leak', 'warning', 'info'), edgeString),
      what: fc.array(fc.oneof(fc.constantFrom('bitmaps', 'snapshots', 'backing', 'unknown-extensions'), edgeString), {
        maxLength: 10,
      }),
      save: fc.oneof(fileRef, scalar),
      target: fc.record({
        kind: fc.oneof(fc.constantFrom('copy', 'inPlace'), edgeString),
        save: fileRef,
        journal: scalar,
      }),
      planId: edgeString,
      format: fc.oneof(fc.constantFrom('html', 'json', 'raw', 'qcow2'), edgeString),
      recursive: scalar,
      referrers: scalar,
      dir: scalar,
    },
    { requiredKeys: [] },
  ),
  // Deep nesting: the validators must not recurse without bound.
  fc.nat({ max: 5000 }).map((n) => {
    let v: unknown = 1;
    for (let i = 0; i < n; i++) v = i % 2 ? [v] : { ref: v };
    return v;
  }),
);

const typed = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((a) => a as ArrayBufferView),
  fc.float64Array({ maxLength: 8 }).map((a) => a as ArrayBufferView),
  fc.uint32Array({ maxLength: 8 }).map((a) => a as ArrayBufferView),
);
const frame = fc
  .record({
    data: typed,
    pokes: fc.array(fc.record({ at: fc.nat(), byte: fc.nat({ max: 255 }) }), { maxLength: 6 }),
    json: fc.option(fc.string({ maxLength: 60 })),
    cut: fc.option(fc.nat()),
  })
  .map(({ data, pokes, json, cut }) => {
    const enc = encodeMessage({ method: 'bytes.read', args: { data, more: [data] } });
    let b = typeof enc === 'string' ? new TextEncoder().encode(enc) : enc.slice();
    if (json !== null && b.length > 8) {
      // Replace the JSON head with something else, keeping the declared length.
      const j = new TextEncoder().encode(json);
      b.set(j.subarray(0, Math.min(j.length, b.length - 8)), 8);
    }
    for (const p of pokes) if (b.length > 0) b[p.at % b.length] = p.byte;
    if (cut !== null && b.length > 0) b = b.slice(0, cut % b.length);
    return b;
  });

export const contractCaseArb: fc.Arbitrary<ContractCase> = fc.record(
  {
    method: fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...METHODS) }, { weight: 1, arbitrary: edgeString }),
    args,
    frame,
  },
  { requiredKeys: ['method', 'args'] },
);
