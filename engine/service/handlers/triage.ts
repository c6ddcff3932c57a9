// Triage of several images or a folder (issue 7). Placeholder until that handler is written.
import { notAvailable, type HandlerTable } from '../handler.js';

export const handlers: HandlerTable = {
  'triage.scan': notAvailable('triage.scan', 'issue 7'),
};
