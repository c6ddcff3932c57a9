import type { ViewDef } from './registry.js';
import Overview from './Overview.svelte';

export default { id: 'overview', title: 'Overview', order: 10, needs: 'image', component: Overview } satisfies ViewDef;
