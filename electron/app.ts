/**
 * Main process wiring: one window, the engine host (utility process), the menu, IPC with sender
 * validation, file associations / command-line files, and the first-run sample.
 */
import { app, type BrowserWindow, dialog, ipcMain, Menu, utilityProcess, type UtilityProcess } from 'electron';
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServerMessage } from '../engine/contract/contract.js';
import { VERSION } from '../engine/base/version.js';
import { Bridge, type HostInbound } from './bridge.js';
import type { HostOutbound } from './engine-host.js';
import { menuTemplate, type RecentMenuItem } from './menu.js';
import type { RendererOrigin } from './security.js';
import { createMainWindow } from './window.js';

export const IPC_SEND = 'q2d:send';
export const IPC_MESSAGE = 'q2d:message';
export const IPC_DROP = 'q2d:drop';

const here = dirname(fileURLToPath(import.meta.url));

function paths(): { preload: string; origin: RendererOrigin; engineHost: string; samples: string } {
  const origin: RendererOrigin = { indexHtml: join(here, '../renderer/index.html') };
  const dev = process.env.ELECTRON_RENDERER_URL;
  if (dev && !app.isPackaged) origin.devUrl = dev;
  const samples = app.isPackaged
    ? join(process.resourcesPath, 'samples')
    : join(app.getAppPath(), 'resources', 'samples');
  return { preload: join(here, '../preload/preload.cjs'), origin, engineHost: join(here, 'engine-host.js'), samples };
}

export function startApp(): void {
  app.enableSandbox();
  if (!app.requestSingleInstanceLock()) {
    app.quit();
    return;
  }
  const p = paths();
  let win: BrowserWindow | null = null;
  let host: UtilityProcess | null = null;
  let recent: RecentMenuItem[] = [];
  const pendingFiles: string[] = process.argv.slice(app.isPackaged ? 1 : 2).filter((a) => /\.(qcow2|qcow)$/i.test(a));
  const firstRun = !existsSync(join(app.getPath('userData'), 'recent.json'));

  const toRenderer = (m: ServerMessage): void => {
    if (win && !win.isDestroyed()) win.webContents.send(IPC_MESSAGE, m);
  };
  const post = (m: HostInbound): void => host?.postMessage(m);

  const bridge = new Bridge({
    origin: p.origin,
    post,
    toRenderer,
    pickFile: async () => {
      const r = win
        ? await dialog.showOpenDialog(win, {
            title: 'Open a qcow2 image',
            properties: ['openFile'],
            filters: [
              { name: 'qcow2 images', extensions: ['qcow2', 'qcow', 'img'] },
              { name: 'All files', extensions: ['*'] },
            ],
          })
        : { canceled: true, filePaths: [] };
      return r.canceled ? null : (r.filePaths[0] ?? null);
    },
    isFile: async (path) =>
      stat(path).then(
        (s) => s.isFile(),
        () => false,
      ),
  });

  const openPath = async (path: string): Promise<void> => {
    try {
      const id = await bridge.grant(path);
      toRenderer({ t: 'notice', notice: { kind: 'open', ref: { kind: 'granted', id } } });
    } catch (err) {
      toRenderer({
        t: 'notice',
        notice: {
          kind: 'error',
          error: { code: 'not-found', message: err instanceof Error ? err.message : String(err) },
        },
      });
    }
  };

  const rebuildMenu = (): void => {
    Menu.setApplicationMenu(
      Menu.buildFromTemplate(
        menuTemplate(
          recent,
          {
            open: () => toRenderer({ t: 'notice', notice: { kind: 'menu', command: 'open' } }),
            openRecent: (id) => toRenderer({ t: 'notice', notice: { kind: 'open', ref: { kind: 'recent', id } } }),
            close: () => toRenderer({ t: 'notice', notice: { kind: 'menu', command: 'close' } }),
            showView: (view) => toRenderer({ t: 'notice', notice: { kind: 'menu', command: 'view', view } }),
            about: () =>
              void dialog.showMessageBox({
                type: 'info',
                title: 'About qcow2-doctor',
                message: `qcow2-doctor ${VERSION}`,
                detail:
                  'Inspect, check and safely repair qcow2 disk images. QEMU is the reference: the checks match `qemu-img check`.',
              }),
            quit: () => app.quit(),
          },
          process.platform === 'darwin',
          !app.isPackaged,
        ),
      ),
    );
  };

  const startHost = (): void => {
    host = utilityProcess.fork(p.engineHost, [app.getPath('userData'), p.samples], {
      serviceName: 'qcow2-doctor engine',
    });
    host.on('message', (m: HostOutbound) => {
      if (m.t === 'recent') {
        recent = m.items;
        rebuildMenu();
      } else toRenderer(m);
    });
    host.on('exit', (code) => {
      host = null;
      if (app.isReady() && win && !win.isDestroyed()) {
        toRenderer({
          t: 'notice',
          notice: {
            kind: 'error',
            error: {
              code: 'internal',
              message: `The engine stopped (exit code ${code}); it was restarted. Open the image again.`,
            },
          },
        });
        startHost();
      }
    });
  };

  ipcMain.on(IPC_SEND, (event, msg: unknown) => bridge.onRendererMessage(event.senderFrame, msg));
  ipcMain.handle(IPC_DROP, (event, path: unknown) => bridge.onDrop(event.senderFrame, path));

  app.on('web-contents-created', (_e, contents) => {
    contents.setWindowOpenHandler(() => ({ action: 'deny' }));
    contents.on('will-attach-webview', (ev) => ev.preventDefault());
  });
  app.on('open-file', (event, path) => {
    event.preventDefault();
    if (win) void openPath(path);
    else pendingFiles.push(path);
  });
  app.on('second-instance', (_e, argv) => {
    for (const a of argv.slice(1)) if (/\.(qcow2|qcow)$/i.test(a)) void openPath(a);
    if (win) {
      if (win.isMinimized()) win.restore();
      win.focus();
    }
  });
  app.on('window-all-closed', () => app.quit());
  app.on('will-quit', () => host?.kill());

  void app.whenReady().then(() => {
    startHost();
    rebuildMenu();
    win = createMainWindow(p.preload, p.origin);
    win.webContents.once('did-finish-load', () => {
      for (const f of pendingFiles.splice(0)) void openPath(f);
      if (firstRun && existsSync(join(p.samples, 'sample-snapshots.qcow2')))
        toRenderer({ t: 'notice', notice: { kind: 'open', ref: { kind: 'sample', name: 'sample-snapshots.qcow2' } } });
    });
    win.on('closed', () => (win = null));
  });
}
