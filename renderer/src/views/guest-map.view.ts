import type { ViewDef } from './registry.js';
import GuestMap from './GuestMap.svelte';

export default {
  id: 'guest-map',
  title: 'Guest map',
  order: 30,
  needs: 'check',
  component: GuestMap,
} satisfies ViewDef;
