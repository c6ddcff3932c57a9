// Salvage campaign: 64 KiB and 4 KiB clusters with an internal snapshot — every damage kind, salvaged to raw and to qcow2, measured
// against qemu-img convert of the undamaged image.
import { campaign } from './campaign-checks.js';

campaign(['c64k-snap', 'c4k-snap']);
