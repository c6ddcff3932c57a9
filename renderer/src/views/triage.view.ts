import type { ViewDef } from './registry.js';
import Triage from './Triage.svelte';

export default { id: 'triage', title: 'Triage', order: 2, needs: 'none', component: Triage } satisfies ViewDef;
