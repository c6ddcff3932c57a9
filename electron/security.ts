/**
 * The window's security settings and the checks every IPC message passes. Kept apart from the
 * rest of main so tests can assert them with `electron` mocked.
 */
import type { Session, WebContents, WebFrameMain, WebPreferences } from 'electron';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { resolve } from 'node:path';

/** The renderer's Content-Security-Policy: own scripts/styles only, no remote content, no eval. */
export const APP_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "font-src 'self'",
  "connect-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join('; ');

/** `devTools`: only for a development build; a packaged app opens none. */
export function webPreferences(preloadPath: string, devTools = false): WebPreferences {
  return {
    preload: preloadPath,
    contextIsolation: true,
    sandbox: true,
    nodeIntegration: false,
    nodeIntegrationInWorker: false,
    nodeIntegrationInSubFrames: false,
    webSecurity: true,
    allowRunningInsecureContent: false,
    webviewTag: false,
    experimentalFeatures: false,
    navigateOnDragDrop: false,
    spellcheck: false,
    devTools,
  };
}

/**
 * Where the renderer may come from: the built index.html (file://), or electron-vite's dev server
 * when ELECTRON_RENDERER_URL is set in development.
 */
export interface RendererOrigin {
  /** Absolute path of the built renderer's index.html. */
  indexHtml: string;
  /** Dev server URL (development only). */
  devUrl?: string;
}

export function rendererUrl(o: RendererOrigin): string {
  return o.devUrl ?? pathToFileURL(o.indexHtml).href;
}

/** True when a frame is our renderer's top frame (same file, or the dev server's origin). */
export function isTrustedUrl(url: string, o: RendererOrigin): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  if (o.devUrl) {
    try {
      if (u.origin === new URL(o.devUrl).origin) return true;
    } catch {
      return false;
    }
  }
  if (u.protocol !== 'file:' || u.host !== '') return false;
  try {
    return resolve(fileURLToPath(u)) === resolve(o.indexHtml);
  } catch {
    return false;
  }
}

/** Validate an IPC sender: our window's main frame, showing our renderer. */
export function isTrustedSender(frame: WebFrameMain | null | undefined, o: RendererOrigin): boolean {
  if (!frame) return false;
  if (frame.parent !== null) return false;
  return isTrustedUrl(frame.url, o);
}

/**
 * The CSP as a response header on every page of ours (the meta tag in index.html is the second
 * line): a header holds even for a document that lost or never had the tag.
 */
export function applyCspHeaders(session: Session, o: RendererOrigin): void {
  session.webRequest.onHeadersReceived((details, callback) => {
    if (!isTrustedUrl(details.url, o) && !isOwnAsset(details.url, o)) {
      callback({});
      return;
    }
    const headers = { ...details.responseHeaders };
    for (const k of Object.keys(headers)) if (k.toLowerCase() === 'content-security-policy') delete headers[k];
    callback({ responseHeaders: { ...headers, 'Content-Security-Policy': [APP_CSP] } });
  });
}

/** A file of the built renderer (its scripts and styles beside index.html), or of the dev server. */
function isOwnAsset(url: string, o: RendererOrigin): boolean {
  try {
    const u = new URL(url);
    if (o.devUrl && u.origin === new URL(o.devUrl).origin) return true;
    if (u.protocol !== 'file:') return false;
    const dir = resolve(o.indexHtml, '..');
    return resolve(fileURLToPath(u)).startsWith(`${dir}/`);
  } catch {
    return false;
  }
}

/** Deny navigation, new windows, webviews and every permission request for a webContents. */
export function harden(contents: WebContents, o: RendererOrigin): void {
  applyCspHeaders(contents.session, o);
  contents.setWindowOpenHandler(() => ({ action: 'deny' }));
  contents.on('will-navigate', (event, url) => {
    if (!isTrustedUrl(url, o)) event.preventDefault();
  });
  contents.on('will-redirect', (event) => event.preventDefault());
  contents.on('will-attach-webview', (event) => event.preventDefault());
  contents.session.setPermissionRequestHandler((_wc, _permission, callback) => callback(false));
  contents.session.setPermissionCheckHandler(() => false);
}
