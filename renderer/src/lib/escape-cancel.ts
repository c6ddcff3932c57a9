/**
 * Esc cancels what the Cancel button on screen cancels: every progress bar with a Cancel registers
 * it here while it is shown, and Esc calls the most recent one. One rule, so no job is left out.
 */
const shown: Array<() => void> = [];

/** Register a visible Cancel; returns the function that unregisters it. */
export function offerCancel(cancel: () => void): () => void {
  shown.push(cancel);
  return () => {
    const i = shown.lastIndexOf(cancel);
    if (i >= 0) shown.splice(i, 1);
  };
}

/** Esc: cancel the most recently shown job; false when no Cancel is on screen. */
export function cancelByEscape(): boolean {
  const cancel = shown.at(-1);
  if (!cancel) return false;
  cancel();
  return true;
}
