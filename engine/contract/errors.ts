/**
 * Errors that cross the renderer↔engine boundary. Like pdf.js, an error is flattened to a plain
 * record on one side and rebuilt as a typed ContractError on the other, so the UI can tell a
 * refusal (bad image, path outside the root) from a cancel or a bug. Pure module.
 */
export type ErrorCode =
  /** An argument failed validation (names the field and the value). */
  | 'invalid-argument'
  /** Unknown handle, file, cluster, job... */
  | 'not-found'
  /** Outside the served root, bad token, unexpected sender. */
  | 'access-denied'
  /** The image is not a qcow2 image QEMU would open (Qcow2FormatError). */
  | 'format'
  | 'cancelled'
  /** The request exists in the contract but its handler has not been built yet (or not in this host). */
  | 'not-available'
  /** Reading or writing the file failed. */
  | 'io'
  /** The image is in use (held by a running VM, or another job holds it). */
  | 'busy'
  | 'internal';

export interface WireError {
  code: ErrorCode;
  message: string;
  /** Field named by a refusal (e.g. "header.cluster_bits", "args.cluster"). */
  field?: string;
  value?: string;
  /** QEMU's wording for a format refusal. */
  qemuReason?: string;
  /** A file that could not be opened as an image: a handle salvage.scan/export accept. */
  salvageSource?: string;
  /** The refused file's display name (never a host path when serving). */
  salvageName?: string;
}

export class ContractError extends Error {
  readonly code: ErrorCode;
  readonly field?: string;
  readonly value?: string;
  readonly qemuReason?: string;
  readonly salvageSource?: string;
  readonly salvageName?: string;

  constructor(
    code: ErrorCode,
    message: string,
    extra: { field?: string; value?: string; qemuReason?: string; salvageSource?: string; salvageName?: string } = {},
  ) {
    super(message);
    this.name = 'ContractError';
    this.code = code;
    if (extra.field !== undefined) this.field = extra.field;
    if (extra.value !== undefined) this.value = extra.value;
    if (extra.qemuReason !== undefined) this.qemuReason = extra.qemuReason;
    if (extra.salvageSource !== undefined) this.salvageSource = extra.salvageSource;
    if (extra.salvageName !== undefined) this.salvageName = extra.salvageName;
  }

  toWire(): WireError {
    const w: WireError = { code: this.code, message: this.message };
    if (this.field !== undefined) w.field = this.field;
    if (this.value !== undefined) w.value = this.value;
    if (this.qemuReason !== undefined) w.qemuReason = this.qemuReason;
    if (this.salvageSource !== undefined) w.salvageSource = this.salvageSource;
    if (this.salvageName !== undefined) w.salvageName = this.salvageName;
    return w;
  }

  static fromWire(w: unknown): ContractError {
    const r = (typeof w === 'object' && w !== null ? w : {}) as Partial<WireError>;
    const code = typeof r.code === 'string' && CODES.has(r.code) ? r.code : 'internal';
    const message = typeof r.message === 'string' ? r.message : 'unknown error';
    const extra: { field?: string; value?: string; qemuReason?: string; salvageSource?: string; salvageName?: string } =
      {};
    if (typeof r.field === 'string') extra.field = r.field;
    if (typeof r.value === 'string') extra.value = r.value;
    if (typeof r.qemuReason === 'string') extra.qemuReason = r.qemuReason;
    if (typeof r.salvageSource === 'string') extra.salvageSource = r.salvageSource;
    if (typeof r.salvageName === 'string') extra.salvageName = r.salvageName;
    return new ContractError(code, message, extra);
  }
}

const CODES = new Set<ErrorCode>([
  'invalid-argument',
  'not-found',
  'access-denied',
  'format',
  'cancelled',
  'not-available',
  'io',
  'busy',
  'internal',
]);

/**
 * Turn anything thrown inside the engine into a WireError (by name, so this module needs no engine
 * imports). Unknown errors keep their message: the engine's messages are one line by design.
 */
export function toWireError(err: unknown): WireError {
  const w = wireOf(err);
  // image.open tags a refused file with a salvage source (handlers/image.ts), whatever the error.
  const tagged = err as { salvageSource?: unknown; salvageName?: unknown } | null;
  if (typeof tagged?.salvageSource === 'string' && w.salvageSource === undefined) {
    w.salvageSource = tagged.salvageSource;
    if (typeof tagged.salvageName === 'string') w.salvageName = tagged.salvageName;
  }
  return w;
}

function wireOf(err: unknown): WireError {
  if (err instanceof ContractError) return err.toWire();
  if (err instanceof Error) {
    const e = err as Error & { qemuReason?: unknown; field?: unknown; value?: unknown; code?: unknown };
    if (e.name === 'Qcow2FormatError') {
      const w: WireError = { code: 'format', message: e.message };
      if (typeof e.qemuReason === 'string') w.qemuReason = e.qemuReason;
      if (typeof e.field === 'string') w.field = e.field;
      if (e.value !== undefined) w.value = String(e.value);
      return w;
    }
    if (e.name === 'CancelledError') return { code: 'cancelled', message: 'cancelled' };
    if (e.name === 'UnreadableError' || e.name === 'ReadOnlyError') return { code: 'io', message: e.message };
    if (typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code)) {
      if (e.code === 'ENOENT') return { code: 'not-found', message: e.message };
      if (e.code === 'EACCES' || e.code === 'EPERM') return { code: 'access-denied', message: e.message };
      if (e.code === 'EBUSY' || e.code === 'EAGAIN') return { code: 'busy', message: e.message };
      return { code: 'io', message: e.message };
    }
    return { code: 'internal', message: e.message || e.name };
  }
  return { code: 'internal', message: String(err) };
}
