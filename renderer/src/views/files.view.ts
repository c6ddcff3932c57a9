import type { ViewDef } from './registry.js';
import Files from './Files.svelte';

export default { id: 'files', title: 'Open', order: 0, needs: 'none', component: Files } satisfies ViewDef;
