// Errors that cross to a browser never carry the server's absolute paths: names inside the served
// root become root-relative, any other absolute path is cut to its last component.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../helpers/qemu.js';
import { createServeHost } from '../../engine/service/serve-host.js';
import { Service } from '../../engine/service/service.js';
import { scrubPaths } from '../../engine/service/path-scrub.js';
import type { ServerMessage } from '../../engine/contract/contract.js';
import type { HandlerTable } from '../../engine/service/handler.js';

const root = tempDir('q2d-errpaths-');
afterAll(root.cleanup);

/** Send one request through a client connection; resolve to the error the client receives. */
async function errorOf(table: HandlerTable): Promise<string> {
  const s = new Service(await createServeHost(root.dir), table);
  try {
    const reply = await new Promise<ServerMessage>((ok) => {
      const c = s.connect((m) => m.t === 'res' && ok(m));
      c.receive({ t: 'req', id: 1, method: 'app.hello', args: {} });
    });
    if (reply.t !== 'res' || reply.ok) throw new Error('expected an error');
    return reply.error.message;
  } finally {
    await s.dispose();
  }
}

describe('errors crossing to a browser', () => {
  it("an EEXIST for disk.report.html names the file relative to the root, not '/srv/…'", async () => {
    mkdirSync(join(root.dir, 'sub'));
    await writeFile(join(root.dir, 'sub', 'disk.report.html'), 'x');
    const msg = await errorOf({
      'app.hello': async () => {
        await writeFile(join(root.dir, 'sub', 'disk.report.html'), 'y', { flag: 'wx' });
        throw new Error('unreachable');
      },
    });
    expect(msg).toMatch(/^EEXIST: file already exists, open 'sub\/disk\.report\.html'$/);
    expect(msg).not.toContain(root.dir);
  });

  it('a path outside the root is cut to its last component', async () => {
    const msg = await errorOf({
      'app.hello': async () => {
        await readFile('/var/lib/q2d-nowhere/secret/file.qcow2');
        throw new Error('unreachable');
      },
    });
    expect(msg).toBe("ENOENT: no such file or directory, open 'file.qcow2'");
  });

  it('scrubPaths keeps words and relative names and rewrites only absolute paths', () => {
    expect(scrubPaths('cannot write /srv/c/disk.qcow2.journal: EACCES', '/srv/c')).toBe(
      'cannot write disk.qcow2.journal: EACCES',
    );
    expect(scrubPaths('the folder /srv/c is full', '/srv/c')).toBe('the folder . is full');
    expect(scrubPaths('backing file (/etc/passwd) refused; a/b stays', '/srv/c')).toBe(
      'backing file (passwd) refused; a/b stays',
    );
  });
});
