/** The triage results of this session: kept when the view is left (opening a row) and found again. */
import type { TriageRow } from '../../../engine/contract/contract.js';

export type SortKey =
  | 'name'
  | 'verdict'
  | 'errors'
  | 'leaks'
  | 'flags'
  | 'virtualSize'
  | 'fileSize'
  | 'backing'
  | 'elapsed'
  | 'summary';

class TriageState {
  rows = $state<TriageRow[]>([]);
  folder = $state('');
  filter = $state<string>('all');
  sortKey = $state<SortKey>('name');
  sortDir = $state(1);
  scannedAt = $state<Date | null>(null);
}

export const triage = new TriageState();
