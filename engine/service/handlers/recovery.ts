// Repair plan / apply / undo / verify and lock status (issue 5). Placeholders until written.
import { notAvailable, type HandlerTable } from '../handler.js';

export const handlers: HandlerTable = {
  'repair.plan': notAvailable('repair.plan', 'issue 5'),
  'repair.apply': notAvailable('repair.apply', 'issue 5'),
  'repair.undo': notAvailable('repair.undo', 'issue 5'),
  'repair.verify': notAvailable('repair.verify', 'issue 5'),
  'lock.status': notAvailable('lock.status', 'issue 5'),
};
