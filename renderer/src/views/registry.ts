/**
 * The view registry. Every file named `*.view.ts` in this folder default-exports a ViewDef and is
 * picked up automatically (import.meta.glob), so a new view (recovery wizard, anomalies table,
 * triage...) is one new .svelte file plus one small .view.ts file, without editing the others.
 */
import type { Component } from 'svelte';

export interface ViewDef {
  /** Stable id (also what the Electron View menu sends). */
  id: string;
  title: string;
  /** Tab order (smaller first). */
  order: number;
  /** What must be loaded before the view makes sense. */
  needs: 'none' | 'image' | 'check';
  /** Keyboard shortcut digit shown in the tab (Alt+digit). */
  key?: string;
  component: Component<Record<string, never>>;
}

const modules = import.meta.glob<{ default: ViewDef }>('./*.view.ts', { eager: true });

export const VIEWS: ViewDef[] = Object.values(modules)
  .map((m) => m.default)
  .sort((a, b) => a.order - b.order);

export function viewById(id: string): ViewDef | undefined {
  return VIEWS.find((v) => v.id === id);
}
