// The Electron layer's security settings, asserted on the real main-process code with `electron`
// mocked (its binary cannot run here): window preferences, CSP, navigation/new-window/permission
// denial, IPC sender and argument validation, path grants, the preload's exposed surface, the menu.
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

type Listener = (...args: unknown[]) => unknown;

const h = vi.hoisted(() => {
  const state = {
    windows: [] as Array<{ options: Record<string, unknown>; contents: FakeContents; loaded?: string }>,
    exposed: {} as Record<string, unknown>,
    ipcSent: [] as unknown[][],
    ipcOn: new Map<string, Listener>(),
    ipcHandle: new Map<string, Listener>(),
    appOn: new Map<string, Listener>(),
    sandboxEnabled: false,
    forks: [] as unknown[][],
    menu: null as unknown,
    packaged: false,
  };
  class FakeContents {
    handlers = new Map<string, Listener>();
    openHandler: Listener | null = null;
    permission: Listener | null = null;
    permissionCheck: Listener | null = null;
    headersReceived: Listener | null = null;
    session = {
      webRequest: { onHeadersReceived: (f: Listener) => void (this.headersReceived = f) },
      setPermissionRequestHandler: (f: Listener) => void (this.permission = f),
      setPermissionCheckHandler: (f: Listener) => void (this.permissionCheck = f),
    };
    setWindowOpenHandler(f: Listener) {
      this.openHandler = f;
    }
    on(ev: string, f: Listener) {
      this.handlers.set(ev, f);
      return this;
    }
    once(ev: string, f: Listener) {
      this.handlers.set(ev, f);
      return this;
    }
    send() {}
  }
  return { state, FakeContents };
});

vi.mock('electron', () => {
  const { state, FakeContents } = h;
  class BrowserWindow {
    webContents = new FakeContents();
    constructor(public options: Record<string, unknown>) {
      state.windows.push({ options, contents: this.webContents });
    }
    once() {
      return this;
    }
    on() {
      return this;
    }
    loadURL(u: string) {
      state.windows[state.windows.length - 1]!.loaded = u;
      return Promise.resolve();
    }
    isDestroyed() {
      return false;
    }
  }
  return {
    BrowserWindow,
    nativeTheme: { shouldUseDarkColors: true },
    contextBridge: { exposeInMainWorld: (k: string, v: unknown) => void (state.exposed[k] = v) },
    ipcRenderer: {
      send: (...a: unknown[]) => void state.ipcSent.push(a),
      on: vi.fn(),
      removeListener: vi.fn(),
      invoke: vi.fn(async () => 'grant-id'),
    },
    webUtils: { getPathForFile: () => '/tmp/x.qcow2' },
    ipcMain: {
      on: (c: string, f: Listener) => void state.ipcOn.set(c, f),
      handle: (c: string, f: Listener) => void state.ipcHandle.set(c, f),
    },
    app: {
      enableSandbox: () => void (state.sandboxEnabled = true),
      requestSingleInstanceLock: () => true,
      get isPackaged() {
        return state.packaged;
      },
      getAppPath: () => process.cwd(),
      getPath: () => mkdtempSync(join(tmpdir(), 'q2d-userdata-')),
      on: (ev: string, f: Listener) => void state.appOn.set(ev, f),
      whenReady: () => new Promise(() => undefined), // never ready: no window in this test
      isReady: () => false,
      quit: vi.fn(),
    },
    dialog: { showOpenDialog: vi.fn(), showMessageBox: vi.fn() },
    Menu: { setApplicationMenu: (m: unknown) => void (state.menu = m), buildFromTemplate: (t: unknown) => t },
    utilityProcess: {
      fork: (...a: unknown[]) => {
        state.forks.push(a);
        return { on() {}, postMessage() {}, kill() {} };
      },
    },
  };
});

import {
  APP_CSP,
  harden,
  isTrustedSender,
  isTrustedUrl,
  webPreferences,
  type RendererOrigin,
} from '../../electron/security.js';
import { createMainWindow } from '../../electron/window.js';
import { Bridge, type HostInbound } from '../../electron/bridge.js';
import { menuTemplate } from '../../electron/menu.js';
import type { ServerMessage } from '../../engine/contract/contract.js';

const dir = mkdtempSync(join(tmpdir(), 'q2d-electron-'));
const indexHtml = join(dir, 'renderer', 'index.html');
const origin: RendererOrigin = { indexHtml };
const ourUrl = pathToFileURL(indexHtml).href;
const frame = (url: string, parent: unknown = null) => ({ url, parent }) as never;

describe('window', () => {
  it('uses context isolation, the sandbox, no Node integration, no webview, web security on', () => {
    const p = webPreferences('/x/preload.cjs');
    expect(p).toMatchObject({
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      webviewTag: false,
      preload: '/x/preload.cjs',
    });
  });

  it('creates the window with those preferences and loads our own file, nothing remote', () => {
    const before = h.state.windows.length;
    createMainWindow('/x/preload.cjs', origin);
    const w = h.state.windows[before]!;
    expect((w.options.webPreferences as Record<string, unknown>).sandbox).toBe(true);
    expect((w.options.webPreferences as Record<string, unknown>).contextIsolation).toBe(true);
    expect((w.options.webPreferences as Record<string, unknown>).nodeIntegration).toBe(false);
    expect(w.loaded).toBe(ourUrl);
  });

  it('sends the CSP (connect-src none) as a response header of our pages, not only a meta tag', () => {
    const before = h.state.windows.length;
    createMainWindow('/x/preload.cjs', origin);
    const c = h.state.windows[before]!.contents;
    const answer = (url: string, responseHeaders: Record<string, string[]> = {}) => {
      let got: unknown;
      c.headersReceived!({ url, responseHeaders }, (r: unknown) => (got = r));
      return got as { responseHeaders?: Record<string, string[]> };
    };
    const page = answer(ourUrl, { 'content-security-policy': ['default-src *'], 'x-other': ['1'] });
    expect(page.responseHeaders!['Content-Security-Policy']).toEqual([APP_CSP]);
    expect(page.responseHeaders!['content-security-policy']).toBeUndefined();
    expect(page.responseHeaders!['x-other']).toEqual(['1']);
    expect(APP_CSP).toMatch(/connect-src 'none'/);
    const asset = answer(pathToFileURL(join(dir, 'renderer', 'assets', 'index.js')).href);
    expect(asset.responseHeaders!['Content-Security-Policy']).toEqual([APP_CSP]);
    expect(answer('https://example.com/')).toEqual({});
  });

  it('opens no DevTools in a packaged build: none in the window, no menu item', () => {
    expect(webPreferences('/x/preload.cjs').devTools).toBe(false);
    const noop = () => undefined;
    const actions = { open: noop, openRecent: noop, close: noop, showView: noop, about: noop, quit: noop };
    const roles = (dev: boolean) => JSON.stringify(menuTemplate([], actions, false, dev)).includes('toggleDevTools');
    expect(roles(false)).toBe(false);
    expect(roles(true)).toBe(true);
    h.state.packaged = true;
    try {
      const before = h.state.windows.length;
      createMainWindow('/x/preload.cjs', origin);
      expect((h.state.windows[before]!.options.webPreferences as Record<string, unknown>).devTools).toBe(false);
    } finally {
      h.state.packaged = false;
    }
    const before = h.state.windows.length;
    createMainWindow('/x/preload.cjs', origin);
    expect((h.state.windows[before]!.options.webPreferences as Record<string, unknown>).devTools).toBe(true);
  });

  it('denies new windows, navigation elsewhere, redirects, webviews and every permission', () => {
    const before = h.state.windows.length;
    createMainWindow('/x/preload.cjs', origin);
    const c = h.state.windows[before]!.contents;
    expect(c.openHandler!({ url: 'https://example.com' })).toEqual({ action: 'deny' });
    const nav = (url: string) => {
      const ev = { preventDefault: vi.fn() };
      c.handlers.get('will-navigate')!(ev, url);
      return ev.preventDefault.mock.calls.length > 0;
    };
    expect(nav('https://evil.example/')).toBe(true);
    expect(nav('file:///etc/passwd')).toBe(true);
    expect(nav(ourUrl)).toBe(false);
    const redirect = { preventDefault: vi.fn() };
    c.handlers.get('will-redirect')!(redirect);
    expect(redirect.preventDefault).toHaveBeenCalled();
    const wv = { preventDefault: vi.fn() };
    c.handlers.get('will-attach-webview')!(wv);
    expect(wv.preventDefault).toHaveBeenCalled();
    const cb = vi.fn();
    c.permission!(null, 'media', cb);
    expect(cb).toHaveBeenCalledWith(false);
    expect(c.permissionCheck!()).toBe(false);
  });

  it('harden() works on any webContents', () => {
    const c = new h.FakeContents();
    harden(c as never, origin);
    expect(c.openHandler!({})).toEqual({ action: 'deny' });
  });
});

describe('Content-Security-Policy', () => {
  const meta =
    /http-equiv="Content-Security-Policy" content="([^"]+)"/.exec(readFileSync('renderer/index.html', 'utf8'))?.[1] ??
    '';
  for (const [name, csp] of [
    ['index.html meta', meta],
    ['APP_CSP', APP_CSP],
  ] as const) {
    it(`${name} allows only our own scripts, no eval, no remote hosts`, () => {
      expect(csp).toMatch(/default-src 'none'/);
      expect(csp).toMatch(/script-src 'self'(;|$)/);
      expect(csp).not.toMatch(/unsafe-eval/);
      expect(csp).not.toMatch(/https?:/);
      expect(csp).toMatch(/base-uri 'none'/);
    });
  }
});

describe('IPC sender validation', () => {
  it('trusts only our renderer file in a top-level frame', () => {
    expect(isTrustedSender(frame(ourUrl), origin)).toBe(true);
    expect(isTrustedSender(frame(ourUrl, {}), origin)).toBe(false); // a subframe
    expect(isTrustedSender(frame('file:///tmp/other.html'), origin)).toBe(false);
    expect(isTrustedSender(frame('https://evil.example/'), origin)).toBe(false);
    expect(isTrustedSender(null, origin)).toBe(false);
    expect(isTrustedUrl('not a url', origin)).toBe(false);
    // The dev server is trusted only when configured (development).
    expect(isTrustedUrl('http://localhost:5173/', origin)).toBe(false);
    expect(isTrustedUrl('http://localhost:5173/', { ...origin, devUrl: 'http://localhost:5173' })).toBe(true);
  });
});

describe('bridge', () => {
  let posted: HostInbound[];
  let replies: ServerMessage[];
  let picked: string | null;
  let bridge: Bridge;
  const file = join(dir, 'disk.qcow2');
  writeFileSync(file, 'x');

  beforeEach(() => {
    posted = [];
    replies = [];
    picked = file;
    bridge = new Bridge({
      origin,
      post: (m) => void posted.push(m),
      toRenderer: (m) => void replies.push(m),
      pickFile: async () => picked,
      isFile: async (p) => p === file,
    });
  });

  it('drops messages from an unexpected sender without forwarding them', () => {
    bridge.onRendererMessage(frame('https://evil.example/'), { t: 'req', id: 1, method: 'app.hello', args: {} });
    expect(posted).toEqual([]);
    expect(bridge.refused[0]).toMatch(/untrusted sender/);
  });

  it('forwards a valid request from our renderer', () => {
    bridge.onRendererMessage(frame(ourUrl), {
      t: 'req',
      id: 1,
      method: 'cluster.describe',
      args: { handle: 'abcdefgh12', cluster: 5 },
    });
    expect(posted).toEqual([
      { t: 'client', msg: { t: 'req', id: 1, method: 'cluster.describe', args: { handle: 'abcdefgh12', cluster: 5 } } },
    ]);
  });

  it('refuses bad arguments in main, answering with invalid-argument naming the field', () => {
    bridge.onRendererMessage(frame(ourUrl), {
      t: 'req',
      id: 2,
      method: 'cluster.describe',
      args: { handle: 'abcdefgh12', cluster: -1 },
    });
    bridge.onRendererMessage(frame(ourUrl), { t: 'req', id: 3, method: 'no.such', args: {} });
    bridge.onRendererMessage(frame(ourUrl), {
      t: 'req',
      id: 4,
      method: 'bytes.read',
      args: { handle: 'abcdefgh12', offset: 0, length: 1, path: '/etc/passwd' },
    });
    expect(posted).toEqual([]);
    expect(replies.map((r) => (r.t === 'res' && !r.ok ? [r.id, r.error.code] : null))).toEqual([
      [2, 'invalid-argument'],
      [3, 'invalid-argument'],
      [4, 'invalid-argument'],
    ]);
    const first = replies[0] as { error: { field?: string } };
    expect(first.error.field).toBe('args.cluster');
  });

  it('never lets the renderer name a path: root refs are refused, the dialog result becomes a grant', async () => {
    bridge.onRendererMessage(frame(ourUrl), {
      t: 'req',
      id: 5,
      method: 'image.open',
      args: { ref: { kind: 'root', path: '/etc/passwd' } },
    });
    expect(posted).toEqual([]);
    expect(replies[0]).toMatchObject({ id: 5, ok: false, error: { code: 'not-available' } });
    bridge.onRendererMessage(frame(ourUrl), {
      t: 'req',
      id: 6,
      method: 'image.open',
      args: { ref: { kind: 'dialog' } },
    });
    await vi.waitFor(() => expect(posted.length).toBe(2));
    expect(posted[0]).toMatchObject({ t: 'grant', path: file, name: 'disk.qcow2' });
    const grant = (posted[0] as { id: string }).id;
    expect(posted[1]).toEqual({
      t: 'client',
      msg: { t: 'req', id: 6, method: 'image.open', args: { ref: { kind: 'granted', id: grant } } },
    });
  });

  it('answers cancelled when the open dialog is dismissed', async () => {
    picked = null;
    bridge.onRendererMessage(frame(ourUrl), {
      t: 'req',
      id: 7,
      method: 'image.open',
      args: { ref: { kind: 'dialog' } },
    });
    await vi.waitFor(() => expect(replies.length).toBe(1));
    expect(replies[0]).toMatchObject({ id: 7, ok: false, error: { code: 'cancelled' } });
    expect(posted).toEqual([]);
  });

  it('validates dropped files: sender, absolute path, regular file', async () => {
    await expect(bridge.onDrop(frame('https://evil.example/'), file)).rejects.toThrow(/unexpected sender/);
    await expect(bridge.onDrop(frame(ourUrl), 'relative.qcow2')).rejects.toThrow(/local file/);
    await expect(bridge.onDrop(frame(ourUrl), 42)).rejects.toThrow(/local file/);
    await expect(bridge.onDrop(frame(ourUrl), join(dir, 'missing.qcow2'))).rejects.toThrow(/not a regular file/);
    const id = await bridge.onDrop(frame(ourUrl), file);
    expect(posted).toEqual([{ t: 'grant', id, path: file, name: 'disk.qcow2' }]);
  });
});

describe('preload', () => {
  it('exposes exactly the contract pipe on window.qcow2doctor', async () => {
    await import('../../electron/preload.js');
    const api = h.state.exposed.qcow2doctor as Record<string, unknown>;
    expect(Object.keys(api).sort()).toEqual(['contractVersion', 'onMessage', 'registerDrop', 'send']);
    (api.send as (m: unknown) => void)({ t: 'req', id: 1, method: 'app.hello', args: {} });
    expect(h.state.ipcSent).toEqual([['q2d:send', { t: 'req', id: 1, method: 'app.hello', args: {} }]]);
    await expect((api.registerDrop as (f: unknown) => Promise<string>)('/etc/passwd')).rejects.toThrow(/File/);
  });
});

describe('main start-up', () => {
  it('enables the sandbox for all renderers, registers validated IPC channels, starts no window before ready', async () => {
    const { startApp } = await import('../../electron/app.js');
    const windowsBefore = h.state.windows.length;
    startApp();
    expect(h.state.sandboxEnabled).toBe(true);
    expect([...h.state.ipcOn.keys()]).toEqual(['q2d:send']);
    expect([...h.state.ipcHandle.keys()]).toEqual(['q2d:drop']);
    // A message from a foreign frame through the real channel is dropped (nothing forwarded, no throw).
    h.state.ipcOn.get('q2d:send')!(
      { senderFrame: frame('https://evil.example/') },
      { t: 'req', id: 1, method: 'app.hello', args: {} },
    );
    await expect(
      Promise.resolve(
        h.state.ipcHandle.get('q2d:drop')!({ senderFrame: frame('https://evil.example/') }, '/etc/passwd'),
      ),
    ).rejects.toThrow(/unexpected sender/);
    // Every webContents created later gets new windows denied and webviews blocked.
    const c = new h.FakeContents();
    h.state.appOn.get('web-contents-created')!({}, c);
    expect(c.openHandler!({})).toEqual({ action: 'deny' });
    expect(h.state.appOn.has('open-file')).toBe(true);
    expect(h.state.windows.length).toBe(windowsBefore); // the window comes only once the app is ready
  });
});

describe('menu', () => {
  it('has File (Open…, Open Recent, Close), View and Help → About, wired to actions', () => {
    const calls: string[] = [];
    const t = menuTemplate(
      [{ id: 'r1', name: 'disk.qcow2', location: '/vm' }],
      {
        open: () => calls.push('open'),
        openRecent: (id) => calls.push(`recent:${id}`),
        close: () => calls.push('close'),
        showView: (v) => calls.push(`view:${v}`),
        about: () => calls.push('about'),
        quit: () => calls.push('quit'),
      },
      false,
    );
    const labels = t.map((m) => m.label);
    expect(labels).toEqual(['&File', '&View', '&Help']);
    const file = t[0]!.submenu as Array<{
      label?: string;
      click?: () => void;
      submenu?: Array<{ label?: string; click?: () => void }>;
    }>;
    expect(file.map((i) => i.label).filter(Boolean)).toEqual(['Open…', 'Open Recent', 'Close Image', 'Quit']);
    file[0]!.click!();
    file[1]!.submenu![0]!.click!();
    file.find((i) => i.label === 'Close Image')!.click!();
    (t[2]!.submenu as Array<{ label: string; click: () => void }>)[0]!.click();
    (t[1]!.submenu as Array<{ label?: string; click?: () => void }>)[0]!.click!();
    expect(calls).toEqual(['open', 'recent:r1', 'close', 'about', 'view:files']);
  });
});
