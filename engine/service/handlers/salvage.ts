// Salvage scan and export (issue 8). Placeholders until written.
import { notAvailable, type HandlerTable } from '../handler.js';

export const handlers: HandlerTable = {
  'salvage.scan': notAvailable('salvage.scan', 'issue 8'),
  'salvage.export': notAvailable('salvage.export', 'issue 8'),
};
