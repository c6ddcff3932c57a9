import type { ViewDef } from './registry.js';
import Anomalies from './Anomalies.svelte';

export default {
  id: 'anomalies',
  title: 'Findings',
  order: 25,
  needs: 'check',
  component: Anomalies,
} satisfies ViewDef;
