/**
 * Errors that cross to a browser name files relative to the served root: the server's own folder
 * layout (`/srv/customers/…`) is nobody's business. Paths inside the root become root-relative;
 * any other absolute path is cut to its last component.
 */
import { sep } from 'node:path';

const ABSOLUTE = /(^|[\s'"`(=[])(\/(?:[^\s'"`()[\],;]+\/)*)([^\s'"`()[\],;/]*)/g;

export function scrubPaths(text: string, root: string): string {
  const prefix = root.endsWith(sep) ? root : root + sep;
  const inside = text.split(prefix).join('');
  const named = inside.split(root).join('.');
  return named.replace(ABSOLUTE, (_m, lead: string, _dir: string, last: string) => `${lead}${last || '.'}`);
}
