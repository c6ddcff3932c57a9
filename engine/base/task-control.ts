// What a long task is steered and observed through: its cancel token and its progress sink.
import { CancelledError } from './errors.js';

/** Progress of a long job: a fraction in [0, 1] and what is being done. */
export interface ProgressEvent {
  fraction: number;
  stage: string;
}

export type ProgressSink = (e: ProgressEvent) => void;

/** Cooperative cancellation: long jobs call `throwIfCancelled()` between units of work. */
export class CancelToken {
  private cancelled = false;
  private listeners: Array<() => void> = [];

  get isCancelled(): boolean {
    return this.cancelled;
  }

  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    for (const l of this.listeners.splice(0)) l();
  }

  onCancel(listener: () => void): void {
    if (this.cancelled) listener();
    else this.listeners.push(listener);
  }

  throwIfCancelled(): void {
    if (this.cancelled) throw new CancelledError();
  }

  static readonly none = new CancelToken();
}
