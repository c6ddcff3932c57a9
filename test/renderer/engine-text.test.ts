// Engine sentences in the app: commands shown as code without their backticks, raw byte counts in units.
import { describe, expect, it } from 'vitest';
import { engineText, withUnits } from '../../renderer/src/lib/engine-text.js';

describe('engine text', () => {
  it('turns `command` spans into code pieces', () => {
    expect(engineText('Run `qcow2-doctor check -r all` or `qcow2-doctor salvage`.')).toEqual([
      { code: false, text: 'Run ' },
      { code: true, text: 'qcow2-doctor check -r all' },
      { code: false, text: ' or ' },
      { code: true, text: 'qcow2-doctor salvage' },
      { code: false, text: '.' },
    ]);
  });

  it('keeps an unpaired backtick as text', () => {
    expect(
      engineText('a ` b')
        .map((p) => p.text)
        .join(''),
    ).toBe('a ` b');
    expect(engineText('a ` b').every((p) => !p.code)).toBe(true);
  });

  it('gives raw byte counts units, leaves small counts and code alone', () => {
    expect(withUnits('virtual size unknown (header lost): 2097152 bytes, the end')).toBe(
      'virtual size unknown (header lost): 2 MiB, the end',
    );
    expect(withUnits('all 21474836480 bytes of the disk')).toBe('all 20 GiB of the disk');
    expect(withUnits('512 bytes')).toBe('512 bytes');
    expect(engineText('`--virtual-size 2097152 bytes`')[0]!.text).toBe('--virtual-size 2097152 bytes');
  });
});
