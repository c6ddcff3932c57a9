// The guest map by layer of the backing chain: for each guest cluster, which file its bytes are
// read from (the layer `qemu-img map` names), so an overlay's own data stands apart from its base's.

/** Origin code: every byte of the cluster reads as zeros (nothing, or zero clusters, in every layer). */
export const ORIGIN_ZERO = 0;
/** Origin code: the bytes come from a backing file that could not be opened here. */
export const ORIGIN_UNKNOWN = 255;

export interface ChainLayerInfo {
  /** 0 the image itself, 1 its backing file, … (origin code = 1 + depth). */
  depth: number;
  /** The file name (base name; the image's own name for depth 0). */
  name: string;
  format: 'qcow2' | 'raw';
  /** Guest clusters whose data this layer provides. */
  clusters: number;
}

export interface GuestLayers {
  /** Origin code per guest cluster (the top image's cluster size). */
  origin: Uint8Array;
  layers: ChainLayerInfo[];
  zeroClusters: number;
  unknownClusters: number;
  /** Why the chain ends before its last backing file (its data is then unknown here). */
  stoppedAt?: string;
}
