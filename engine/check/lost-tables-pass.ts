import type { CheckState } from './state.js';

export async function reportLostTables(_state: CheckState): Promise<void> {}
