/**
 * The recent-images list: kept by the host (Electron persists it in userData; `serve` keeps it in
 * memory), exposed to the renderer only as opaque ids and display names.
 */
import type { RecentEntry } from '../contract/contract.js';
import { randomHandle } from './session.js';

export interface RecentItem {
  id: string;
  path: string;
  name: string;
  location?: string;
  openedAt: string;
}

export const MAX_RECENT = 12;

export class RecentStore {
  private items: RecentItem[] = [];

  constructor(
    initial: RecentItem[] = [],
    private readonly onChange?: (items: RecentItem[]) => void,
  ) {
    this.items = initial.filter((i) => typeof i?.path === 'string' && typeof i?.id === 'string').slice(0, MAX_RECENT);
  }

  /** Record an open (most recent first, one entry per path). */
  touch(path: string, name: string, location?: string): RecentItem {
    const old = this.items.find((i) => i.path === path);
    const item: RecentItem = {
      id: old?.id ?? randomHandle().slice(0, 16),
      path,
      name,
      openedAt: new Date().toISOString(),
    };
    if (location !== undefined) item.location = location;
    this.items = [item, ...this.items.filter((i) => i.path !== path)].slice(0, MAX_RECENT);
    this.onChange?.(this.items);
    return item;
  }

  find(id: string): RecentItem | undefined {
    return this.items.find((i) => i.id === id);
  }

  forget(id: string): void {
    this.items = this.items.filter((i) => i.id !== id);
    this.onChange?.(this.items);
  }

  list(): RecentEntry[] {
    return this.items.map(({ id, name, location, openedAt }) =>
      location === undefined ? { id, name, openedAt } : { id, name, location, openedAt },
    );
  }

  all(): RecentItem[] {
    return [...this.items];
  }
}
