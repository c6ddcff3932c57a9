import type { ViewDef } from './registry.js';
import History from './history/History.svelte';

export default {
  id: 'history',
  title: 'Write history',
  order: 50,
  needs: 'none',
  component: History,
} satisfies ViewDef;
