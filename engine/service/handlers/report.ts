// Report export (HTML/JSON) and strip (issue 8). Placeholders until written.
import { notAvailable, type HandlerTable } from '../handler.js';

export const handlers: HandlerTable = {
  'report.export': notAvailable('report.export', 'issue 8'),
  'image.strip': notAvailable('image.strip', 'issue 8'),
};
