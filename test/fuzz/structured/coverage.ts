// Steering by V8's precise block coverage (node:inspector): after each input, which blocks of the
// engine ran. V8 reports a function's range and the blocks inside it that did not run, so a block
// counts as run when its function ran and the block lies in no range reported as not run. Blocks
// become known the first time an input skips them. V8 instruments blocks only in functions
// compiled after precise coverage starts, so it starts once, before any engine code runs, and is
// never stopped; each map keeps its own record of what ran.
import { Session } from 'node:inspector/promises';

let shared: Promise<Session> | undefined;

/** Start V8's precise block coverage for this thread (once). Call before the engine runs. */
export function startCoverage(): Promise<Session> {
  shared ??= (async () => {
    const session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.startPreciseCoverage', { callCount: false, detailed: true });
    return session;
  })();
  return shared;
}

interface Range {
  startOffset: number;
  endOffset: number;
  count: number;
}

export class CoverageMap {
  private session: Session | undefined;
  private readonly blocks = new Map<string, Array<[number, number]>>();
  private readonly seen = new Set<string>();

  /** `only` keeps scripts whose URL contains it (the engine's sources). */
  constructor(private readonly only = '/engine/') {}

  async start(): Promise<void> {
    this.session = await startCoverage();
  }

  /** Blocks and functions known so far that some input ran. */
  get size(): number {
    return this.seen.size;
  }

  /** Collect (and reset) the coverage of what ran since the last call; returns how many features are new. */
  async take(): Promise<number> {
    if (!this.session) return 0;
    const { result } = await this.session.post('Profiler.takePreciseCoverage');
    let fresh = 0;
    const mark = (key: string): void => {
      if (this.seen.has(key)) return;
      this.seen.add(key);
      fresh++;
    };
    for (const script of result) {
      if (!script.url.includes(this.only)) continue;
      for (const fn of script.functions) {
        const [whole, ...inner] = fn.ranges as Range[];
        if (!whole || whole.count === 0) continue;
        const fnKey = `${script.url}#${whole.startOffset}`;
        mark(fnKey);
        let known = this.blocks.get(fnKey);
        if (!known) this.blocks.set(fnKey, (known = []));
        const skipped = inner.filter((r) => r.count === 0);
        for (const r of skipped)
          if (!known.some(([s, e]) => s === r.startOffset && e === r.endOffset))
            known.push([r.startOffset, r.endOffset]);
        for (const [s, e] of known)
          if (!skipped.some((r) => r.startOffset <= s && e <= r.endOffset)) mark(`${fnKey}:${s}-${e}`);
      }
    }
    return fresh;
  }
}
