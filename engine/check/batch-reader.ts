// The checker reads tables through the traversal's batch reader (sorted, merged, synchronous for a
// plain file); this name stays for the passes that read blocks of their own with it.
export { BufferPool, pipeline, readRanges, readRangesInto } from '../image/traversal/batch-reads.js';
