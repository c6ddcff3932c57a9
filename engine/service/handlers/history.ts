// history.open, history.record, history.workloads, history.stateAt, history.judge, history.explain,
// history.close: a write log scrubbed entry by entry, and its crash states judged.
import { ContractError } from '../../contract/errors.js';
import type { HandlerTable } from '../handler.js';
import { notJudged } from '../history/judge.js';
import { explainInWorker, judgeInWorker } from '../history/judge-client.js';
import { openHistory, recordHistory, workloadNames } from '../history/load.js';
import { closeHistory, exclusive, getHistory, type History, rememberState } from '../history/store.js';
import { checkPrefix } from '../history/timeline.js';

/** Seconds history.judge runs when the request names no budget. */
const DEFAULT_BUDGET = 20;

const inputOf = (h: History) => ({
  base: h.base,
  log: h.log,
  source: h.source,
  epochs: h.entries.map((e) => e.epoch),
});

export const handlers: HandlerTable = {
  'history.open': async (args, ctx) => openHistory(ctx, args),
  'history.record': async (args, ctx) => recordHistory(ctx, args.workload),
  'history.workloads': async () => workloadNames(),
  'history.stateAt': async (args, ctx) => {
    const h = getHistory(ctx.sessions, args.handle);
    if (args.prefix > h.log.length)
      throw new ContractError(
        'invalid-argument',
        `args.prefix ${args.prefix} is past the end of the log (${h.log.length} entries)`,
        { field: 'args.prefix', value: String(args.prefix) },
      );
    const known = h.states.get(args.prefix);
    if (known) return known;
    const s = await exclusive(h, 'maps', async () => ({
      prefix: args.prefix,
      ...(await checkPrefix(h.builder, h.log, args.prefix, ctx.cancel)),
    }));
    rememberState(h, s);
    return s;
  },
  'history.judge': async (args, ctx) => {
    const h = getHistory(ctx.sessions, args.handle);
    if (args.budget === 0)
      throw new ContractError('invalid-argument', 'args.budget must be at least 1 second (got 0)', {
        field: 'args.budget',
        value: '0',
      });
    return exclusive(h, 'judge', async () => {
      const r = await judgeInWorker(inputOf(h), args.budget ?? DEFAULT_BUDGET, args.seed ?? 1, ctx);
      h.judgement = r.judgement;
      h.judged = r.judged;
      return r.judgement;
    });
  },
  'history.explain': async (args, ctx) => {
    const h = getHistory(ctx.sessions, args.handle);
    return exclusive(h, 'judge', () => {
      const j = h.judged?.[args.state];
      const v = h.judgement?.states[args.state];
      if (!j || !v) return notJudged(args.state, h.judged?.length ?? 0);
      return explainInWorker(inputOf(h), j, v, ctx);
    });
  },
  'history.close': async (args, ctx) => {
    closeHistory(ctx.sessions, args.handle);
    return { ok: true };
  },
};
