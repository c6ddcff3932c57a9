/** The application menu: File (Open…, Open Recent, Close, Quit), View, Help (About). */
import type { MenuItemConstructorOptions } from 'electron';

export interface MenuActions {
  open(): void;
  openRecent(id: string): void;
  close(): void;
  showView(id: string): void;
  about(): void;
  quit(): void;
}

export interface RecentMenuItem {
  id: string;
  name: string;
  location?: string;
}

export const VIEW_ITEMS: Array<{ id: string; label: string; accelerator: string }> = [
  { id: 'files', label: 'Open Image Panel', accelerator: 'Alt+1' },
  { id: 'overview', label: 'Overview', accelerator: 'Alt+2' },
  { id: 'host-map', label: 'Cluster Map', accelerator: 'Alt+3' },
  { id: 'guest-map', label: 'Guest Map', accelerator: 'Alt+4' },
];

/** `devTools`: the Toggle Developer Tools item, in a development build only. */
export function menuTemplate(
  recent: RecentMenuItem[],
  a: MenuActions,
  isMac: boolean,
  devTools = false,
): MenuItemConstructorOptions[] {
  const recentItems: MenuItemConstructorOptions[] = recent.length
    ? recent.map((r) => ({ label: r.location ? `${r.name} — ${r.location}` : r.name, click: () => a.openRecent(r.id) }))
    : [{ label: 'No recent images', enabled: false }];
  return [
    ...(isMac ? [{ role: 'appMenu' as const }] : []),
    {
      label: '&File',
      submenu: [
        { label: 'Open…', accelerator: 'CmdOrCtrl+O', click: () => a.open() },
        { label: 'Open Recent', submenu: recentItems },
        { type: 'separator' },
        { label: 'Close Image', accelerator: 'CmdOrCtrl+W', click: () => a.close() },
        { type: 'separator' },
        { label: 'Quit', accelerator: 'CmdOrCtrl+Q', click: () => a.quit() },
      ],
    },
    {
      label: '&View',
      submenu: [
        ...VIEW_ITEMS.map((v) => ({ label: v.label, accelerator: v.accelerator, click: () => a.showView(v.id) })),
        { type: 'separator' as const },
        { role: 'resetZoom' as const },
        { role: 'zoomIn' as const },
        { role: 'zoomOut' as const },
        { role: 'togglefullscreen' as const },
        ...(devTools ? [{ role: 'toggleDevTools' as const }] : []),
      ],
    },
    {
      label: '&Help',
      submenu: [{ label: 'About qcow2-doctor', click: () => a.about() }],
    },
  ];
}
