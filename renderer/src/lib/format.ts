/** Display helpers shared by the views (sizes as the engine's reports print them). */
import { formatBytes } from '../../../engine/contract/units.js';

export const bytes = (n: number): string => formatBytes(n);

export const hex = (n: number): string => `0x${n.toString(16)}`;

export const count = (n: number): string => n.toLocaleString('en-US');
