// The contract's pure pieces: argument validators, envelope parsing, typed errors both ways, the
// WebSocket binary framing, and the map's level-of-detail pyramid.
import { describe, expect, it } from 'vitest';
import { ContractError, METHODS, parseClientMessage, REQUESTS, validateArgs } from '../../engine/contract/contract.js';
import { toWireError } from '../../engine/contract/errors.js';
import { Qcow2FormatError, CancelledError } from '../../engine/base/errors.js';
import { decodeMessage, encodeMessage } from '../../engine/contract/wire.js';
import { buildOverlay, buildPyramid, layoutColumns, rankTable } from '../../renderer/src/map/pyramid.js';
import { HOST_PALETTE } from '../../renderer/src/map/palette.js';
import { HostRole } from '../../engine/contract/roles.js';

const H = 'abcdefgh12';

describe('argument validation', () => {
  it('every method has a validator and refuses unknown fields', () => {
    expect(METHODS.length).toBe(Object.keys(REQUESTS).length);
    for (const m of METHODS) {
      expect(() => validateArgs(m, { nope: 1 }), m).toThrow(ContractError);
    }
  });

  it('accepts good arguments and names the field and value of bad ones', () => {
    expect(validateArgs('cluster.describe', { handle: H, cluster: 3 })).toEqual({ handle: H, cluster: 3 });
    const cases: Array<[Parameters<typeof validateArgs>[0], unknown, string]> = [
      ['cluster.describe', { handle: H, cluster: -1 }, 'args.cluster'],
      ['cluster.describe', { handle: H, cluster: 1.5 }, 'args.cluster'],
      ['cluster.describe', { handle: H, cluster: 2 ** 60 }, 'args.cluster'],
      ['cluster.describe', { handle: '../etc', cluster: 1 }, 'args.handle'],
      ['bytes.read', { handle: H, offset: 0, length: 64 * 1024 * 1024 }, 'args.length'],
      ['image.open', { ref: { kind: 'path', path: '/etc/passwd' } }, 'args.ref.kind'],
      ['image.open', { ref: { kind: 'root', path: 'a\0b' } }, 'args.ref.path'],
      ['image.open', { ref: { kind: 'root' } }, 'args.ref.path'],
      ['check.run', { handle: H, roleMap: 'yes' }, 'args.roleMap'],
      ['report.export', { handle: H, format: 'pdf', save: { kind: 'inline' } }, 'args.format'],
      [
        'repair.apply',
        { handle: H, planId: 'p1', target: { kind: 'copy', save: { kind: 'path', path: '/tmp/x' } } },
        'args.target.save.kind',
      ],
    ];
    for (const [m, args, field] of cases) {
      try {
        validateArgs(m, args);
        expect.unreachable(`${m} ${JSON.stringify(args)}`);
      } catch (e) {
        expect(e).toBeInstanceOf(ContractError);
        expect((e as ContractError).code).toBe('invalid-argument');
        expect((e as ContractError).field, JSON.stringify(args)).toBe(field);
        expect((e as ContractError).message).toContain(field);
      }
    }
  });

  it('parses envelopes and refuses malformed ones', () => {
    expect(parseClientMessage({ t: 'cancel', id: 4 })).toEqual({ t: 'cancel', id: 4 });
    expect(parseClientMessage({ t: 'req', id: 1, method: 'app.hello' })).toEqual({
      t: 'req',
      id: 1,
      method: 'app.hello',
      args: {},
    });
    for (const bad of [
      null,
      'x',
      { t: 'req', id: -1, method: 'app.hello' },
      { t: 'req', id: 1, method: 'constructor' },
      { t: 'res', id: 1 },
      { t: 'req', id: 1, method: '__proto__' },
    ])
      expect(() => parseClientMessage(bad), JSON.stringify(bad)).toThrow(ContractError);
  });
});

describe('typed errors across the boundary', () => {
  it('keeps the code, field, value and QEMU wording', () => {
    const w = toWireError(new Qcow2FormatError('Unsupported cluster size: 2^30', 'header.cluster_bits', 30));
    expect(w).toEqual({
      code: 'format',
      message: 'Unsupported cluster size: 2^30 (header.cluster_bits = 30)',
      qemuReason: 'Unsupported cluster size: 2^30',
      field: 'header.cluster_bits',
      value: '30',
    });
    const back = ContractError.fromWire(JSON.parse(JSON.stringify(w)));
    expect(back).toBeInstanceOf(ContractError);
    expect([back.code, back.field, back.qemuReason]).toEqual([
      'format',
      'header.cluster_bits',
      'Unsupported cluster size: 2^30',
    ]);
    expect(toWireError(new CancelledError()).code).toBe('cancelled');
    expect(toWireError(Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' })).code).toBe('not-found');
    expect(ContractError.fromWire({ code: 'bogus', message: 7 }).code).toBe('internal');
  });
});

describe('WebSocket framing', () => {
  it('sends plain messages as JSON text', () => {
    const m = { t: 'res', id: 1, ok: true, result: { a: [1, 2] } };
    const e = encodeMessage(m);
    expect(typeof e).toBe('string');
    expect(decodeMessage(e)).toEqual(m);
  });

  it('sends typed arrays as binary, byte for byte, in document order', () => {
    const roles = new Uint8Array(100_003).map((_, i) => i % 20);
    const first = new Float64Array([0, 2 ** 40, 7.5]);
    const m = { t: 'res', id: 2, ok: true, result: { a: { roles }, list: [first, new Uint8Array([9])], n: 3 } };
    const e = encodeMessage(m);
    expect(e).toBeInstanceOf(Uint8Array);
    expect((e as Uint8Array).length).toBeLessThan(roles.length + 1000); // binary, not a JSON array
    const d = decodeMessage(e) as typeof m;
    expect(d.result.a.roles).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(d.result.a.roles).equals(Buffer.from(roles))).toBe(true);
    expect(Array.from(d.result.list[0] as Float64Array)).toEqual([0, 2 ** 40, 7.5]);
    expect(Array.from(d.result.list[1] as Uint8Array)).toEqual([9]);
    expect(d.result.n).toBe(3);
  });

  it('decodes a frame that sits at an odd offset of a larger buffer (as Node sockets deliver it)', () => {
    const e = encodeMessage({ f: new Float64Array([1.5, -2]), u: new Uint8Array([1, 2, 3]) }) as Uint8Array;
    const host = new Uint8Array(e.length + 3);
    host.set(e, 3);
    const d = decodeMessage(host.subarray(3)) as { f: Float64Array; u: Uint8Array };
    expect(Array.from(d.f)).toEqual([1.5, -2]);
    expect(Array.from(d.u)).toEqual([1, 2, 3]);
  });

  it('refuses truncated or lying binary frames', () => {
    const e = encodeMessage({ x: new Uint8Array(64) }) as Uint8Array;
    expect(() => decodeMessage(e.subarray(0, e.length - 32))).toThrow(/beyond frame/);
    expect(() => decodeMessage(new Uint8Array([1, 2, 3]))).toThrow(/too short/);
    const bad = e.slice();
    bad[0] = 0;
    expect(() => decodeMessage(bad)).toThrow(/magic/);
  });
});

describe('map pyramid', () => {
  it('reduces 2×2 blocks to their most important role, level after level', () => {
    const codes = new Uint8Array([
      HostRole.Data,
      HostRole.Free,
      HostRole.Free,
      HostRole.Free,
      HostRole.Corrupt,
      HostRole.Data,
      HostRole.Free,
      HostRole.Free,
    ]);
    const p = buildPyramid(codes, 4, HOST_PALETTE.priority);
    expect(p.levels.map((l) => [l.cols, l.rows])).toEqual([
      [4, 2],
      [2, 1],
      [1, 1],
    ]);
    const code = (r: number) => p.codeOfRank[r];
    expect(Array.from(p.levels[1]!.data).map(code)).toEqual([HostRole.Corrupt, HostRole.Free]);
    expect(code(p.levels[2]!.data[0]!)).toBe(HostRole.Corrupt);
  });

  it('marks cells past the last cluster as empty and ranks unknown codes above free', () => {
    const p = buildPyramid(new Uint8Array([HostRole.Free, 99, HostRole.Free]), 2, HOST_PALETTE.priority);
    expect(Array.from(p.levels[0]!.data)).toEqual([
      rankTable(HOST_PALETTE.priority).rankOf[HostRole.Free],
      1,
      rankTable(HOST_PALETTE.priority).rankOf[HostRole.Free],
      0,
    ]);
    expect(rankTable(HOST_PALETTE.priority).rankOf[HostRole.Free]).toBeGreaterThan(1);
  });

  it('overlays anomaly runs by severity and keeps 16.8 M clusters within ~2 bytes per cluster', () => {
    const o = buildOverlay(10, 5, {
      first: new Float64Array([2, 8]),
      count: new Float64Array([3, 5]),
      severity: new Uint8Array([4, 3]),
    });
    expect(Array.from(o.levels[0]!.data)).toEqual([2, 2, 6, 6, 6, 2, 2, 2, 5, 5]);
    const n = 16_777_216;
    const big = buildPyramid(new Uint8Array(n).fill(HostRole.Data), layoutColumns(n, 1.2), HOST_PALETTE.priority);
    const bytes = big.levels.reduce((a, l) => a + l.data.length, 0);
    expect(bytes).toBeLessThan(n * 1.4);
    expect(big.levels.at(-1)!.cols).toBe(1);
  });
});
