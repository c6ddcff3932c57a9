/**
 * Errors the engine raises on purpose. Every refusal names the structure, the field and the value
 * that made it refuse, in one line; `qemuReason` keeps QEMU's own wording where there is one, so
 * that the CLI can print what `qemu-img` prints.
 */
export class Qcow2FormatError extends Error {
  constructor(
    /** QEMU's wording for the refusal (e.g. "Unsupported cluster size: 2^30"). */
    readonly qemuReason: string,
    /** Where: structure and field, e.g. "header.cluster_bits". */
    readonly field: string,
    /** The offending value as the file holds it. */
    readonly value: string | number | bigint,
  ) {
    super(`${qemuReason} (${field} = ${typeof value === 'string' ? value : String(value)})`);
    this.name = 'Qcow2FormatError';
  }
}

/** The operation was cancelled through its CancelToken. */
export class CancelledError extends Error {
  constructor() {
    super('cancelled');
    this.name = 'CancelledError';
  }
}

/** Image data cannot be read (for example: encrypted guest data, missing backing file). */
export class UnreadableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnreadableError';
  }
}
