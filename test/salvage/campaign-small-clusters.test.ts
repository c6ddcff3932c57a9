// Salvage campaign: 512-byte clusters, 32 L1 entries — every damage kind, salvaged to raw and to qcow2, measured
// against qemu-img convert of the undamaged image.
import { campaign } from './campaign-checks.js';

campaign(['c512-full']);
