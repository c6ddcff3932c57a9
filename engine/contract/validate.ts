/**
 * A tiny runtime validator kit for the contract's arguments. Each validator returns the value typed
 * or throws a ContractError('invalid-argument') naming the field and the value. Pure (no node:, no DOM)
 * so the renderer, the preload, the WebSocket server and the engine host share it.
 */
import { ContractError } from './errors.js';

export type Validator<T> = (value: unknown, field: string) => T;
export type Infer<V> = V extends Validator<infer T> ? T : never;

const show = (v: unknown): string => {
  try {
    const s =
      typeof v === 'string' ? JSON.stringify(v) : typeof v === 'bigint' ? `${v}n` : (JSON.stringify(v) ?? String(v));
    return s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return typeof v;
  }
};

export const bad = (field: string, value: unknown, what: string): never => {
  throw new ContractError('invalid-argument', `${field} must be ${what} (got ${show(value)})`, {
    field,
    value: show(value),
  });
};

export const str =
  (opts: { max?: number; pattern?: RegExp; min?: number } = {}): Validator<string> =>
  (v, f) => {
    if (typeof v !== 'string') return bad(f, v, 'a string');
    if (v.length > (opts.max ?? 4096)) return bad(f, v, `at most ${opts.max ?? 4096} characters`);
    if (opts.min !== undefined && v.length < opts.min) return bad(f, v, `at least ${opts.min} characters`);
    if (v.includes('\0')) return bad(f, v, 'free of NUL characters');
    if (opts.pattern && !opts.pattern.test(v)) return bad(f, v, `matching ${opts.pattern}`);
    return v;
  };

/** A non-negative safe integer, optionally bounded. */
export const uint =
  (max = Number.MAX_SAFE_INTEGER): Validator<number> =>
  (v, f) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max)
      return bad(f, v, `an integer in 0..${max}`);
    return v;
  };

export const bool: Validator<boolean> = (v, f) => (typeof v === 'boolean' ? v : bad(f, v, 'true or false'));

export const oneOf =
  <T extends string>(...values: T[]): Validator<T> =>
  (v, f) =>
    typeof v === 'string' && (values as string[]).includes(v) ? (v as T) : bad(f, v, `one of ${values.join(', ')}`);

export const optional =
  <T>(inner: Validator<T>): Validator<T | undefined> =>
  (v, f) =>
    v === undefined ? undefined : inner(v, f);

export const array =
  <T>(inner: Validator<T>, max = 10_000): Validator<T[]> =>
  (v, f) => {
    if (!Array.isArray(v)) return bad(f, v, 'an array');
    if (v.length > max) return bad(f, `${v.length} items`, `at most ${max} items`);
    return v.map((x, i) => inner(x, `${f}[${i}]`));
  };

type Shape = Record<string, Validator<unknown>>;
type ObjOf<S extends Shape> = { [K in keyof S as undefined extends Infer<S[K]> ? never : K]: Infer<S[K]> } & {
  [K in keyof S as undefined extends Infer<S[K]> ? K : never]?: Infer<S[K]>;
};

/** A plain object with exactly these keys (unknown keys refused: typos never pass silently). */
export const obj =
  <S extends Shape>(shape: S): Validator<ObjOf<S>> =>
  (v, f) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return bad(f, v, 'an object');
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return bad(f, v, 'a plain object');
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v))
      if (!(k in shape)) bad(f ? `${f}.${k}` : k, (v as Record<string, unknown>)[k], 'absent (unknown field)');
    for (const [k, val] of Object.entries(shape)) {
      const got = val((v as Record<string, unknown>)[k], f ? `${f}.${k}` : k);
      if (got !== undefined) out[k] = got;
    }
    return out as ObjOf<S>;
  };

/** A tagged union on `kind`. */
export const tagged =
  <M extends Record<string, Validator<unknown>>>(variants: M): Validator<Infer<M[keyof M]>> =>
  (v, f) => {
    const kind = typeof v === 'object' && v !== null ? (v as { kind?: unknown }).kind : undefined;
    if (typeof kind !== 'string' || !(kind in variants))
      return bad(`${f}.kind`, kind, `one of ${Object.keys(variants).join(', ')}`);
    return variants[kind]!(v, f) as Infer<M[keyof M]>;
  };

export const literal =
  <T extends string>(value: T): Validator<T> =>
  (v, f) =>
    v === value ? value : bad(f, v, JSON.stringify(value));
