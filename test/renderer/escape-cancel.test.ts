// Esc presses the Cancel on screen: the most recently shown one, and none once its bar is gone.
import { describe, expect, it } from 'vitest';
import { cancelByEscape, offerCancel } from '../../renderer/src/lib/escape-cancel.js';

describe('Esc and the Cancel buttons on screen', () => {
  it('cancels the latest shown job, then the one before it; nothing when no Cancel is shown', () => {
    const hits: string[] = [];
    const hideScan = offerCancel(() => hits.push('scan'));
    const hideCheck = offerCancel(() => hits.push('check'));
    expect(cancelByEscape()).toBe(true);
    expect(hits).toEqual(['check']);
    hideCheck();
    expect(cancelByEscape()).toBe(true);
    expect(hits).toEqual(['check', 'scan']);
    hideScan();
    expect(cancelByEscape()).toBe(false);
    expect(hits).toEqual(['check', 'scan']);
  });
});
