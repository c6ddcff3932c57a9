import type { ViewDef } from './registry.js';
import Wizard from '../wizard/Wizard.svelte';

export default { id: 'wizard', title: 'Recovery wizard', order: 5, needs: 'none', component: Wizard } satisfies ViewDef;
