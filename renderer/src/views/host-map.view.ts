import type { ViewDef } from './registry.js';
import HostMap from './HostMap.svelte';

export default {
  id: 'host-map',
  title: 'Cluster map',
  order: 20,
  needs: 'check',
  component: HostMap,
} satisfies ViewDef;
