/** Notes about what strip left out and why, capped so a badly damaged image cannot flood memory. */
export class NoteList {
  readonly lines: string[] = [];
  private dropped = 0;

  constructor(private readonly cap = 200) {}

  add(line: string): void {
    if (this.lines.length < this.cap) this.lines.push(line);
    else this.dropped++;
  }

  /** The notes, with a closing line saying how many more were not listed. */
  all(): string[] {
    return this.dropped ? [...this.lines, `... and ${this.dropped} more notes like these`] : [...this.lines];
  }
}

export function hexOff(n: number): string {
  return `0x${n.toString(16)}`;
}
