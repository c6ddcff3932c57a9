// Salvage campaign: zstd-compressed clusters and a backing chain — every damage kind, salvaged to raw and to qcow2, measured
// against qemu-img convert of the undamaged image.
import { campaign } from './campaign-checks.js';

campaign(['c64k-zstd', 'overlay']);
