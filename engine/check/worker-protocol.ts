// Messages between worker-client.ts and check-worker.ts.
import type { ProgressEvent } from '../base/task-control.js';
import type { CheckResult } from './types.js';

export interface WorkerRequest {
  path: string;
  roleMap?: boolean;
  guestMap?: boolean;
  wantMessages: boolean;
  wantProgress: boolean;
  /** Also send the per-cluster reference counts (the service's cluster.describe shows them). */
  wantReferences?: boolean;
}

export type WorkerReply =
  | { type: 'lines'; lines: string[] }
  | { type: 'progress'; progress: ProgressEvent }
  | { type: 'result'; result: CheckResult; references?: Uint8Array }
  | {
      type: 'error';
      kind: 'format' | 'cancelled' | 'other';
      message: string;
      qemuReason?: string;
      field?: string;
      value?: string;
    };
