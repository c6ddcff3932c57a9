/** The one application window. */
import { app, BrowserWindow, nativeTheme } from 'electron';
import { harden, rendererUrl, webPreferences, type RendererOrigin } from './security.js';

export function createMainWindow(preloadPath: string, origin: RendererOrigin): BrowserWindow {
  const win = new BrowserWindow({
    width: 1400,
    height: 900,
    minWidth: 900,
    minHeight: 600,
    title: 'qcow2-doctor',
    show: false,
    backgroundColor: nativeTheme.shouldUseDarkColors ? '#15171b' : '#f6f7f9',
    webPreferences: webPreferences(preloadPath, !app.isPackaged),
  });
  harden(win.webContents, origin);
  win.once('ready-to-show', () => win.show());
  void win.loadURL(rendererUrl(origin));
  return win;
}
