// `npm run campaign -- [--budget SECONDS] [--seed N] [--cases N] [--jobs N] [--bases A,B] [--keep DIR]
// [--out FILE] [--progress N] [--only I,J] [--json]`: the differential campaign (campaign.ts), its table, and the
// failing cases. Ctrl-C ends the run early and still prints the table of the cases judged so far.
import { type CampaignOptions, parseArgs, runCampaign } from './campaign.js';
import { formatTable, summarise } from './table.js';

async function main(): Promise<void> {
  let o: CampaignOptions;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`campaign: ${(e as Error).message}`);
    process.exit(2);
  }
  const started = Date.now();
  const interrupt = new AbortController();
  process.once('SIGINT', () => {
    console.error('campaign: interrupted; the cases in flight are dropped');
    interrupt.abort();
  });
  const results = await runCampaign(o, (l) => console.error(l), interrupt.signal);
  results.sort((a, b) => a.index - b.index);
  const summary = summarise(results);
  if (o.json) console.log(JSON.stringify({ seed: o.seed, seconds: (Date.now() - started) / 1000, summary, results }));
  else {
    console.log(formatTable(summary));
    const bad = results.filter((r) => r.falseClaims.length > 0 || r.lostVsQemu > 0);
    for (const r of bad.slice(0, 20))
      console.log(
        `- ${r.base} ${r.kind}: ${r.what}\n    ${[...r.falseClaims, r.lostVsQemu ? `${r.lostVsQemu} bytes lost that qemu-img keeps` : ''].filter(Boolean).join('\n    ')}`,
      );
    console.log(`\n${results.length} cases in ${Math.round((Date.now() - started) / 1000)} s, seed ${o.seed}`);
  }
  if (interrupt.signal.aborted) process.exitCode = 130;
  else process.exitCode = summary.total.lostVsQemuCases > 0 || summary.total.falseClaimCases > 0 ? 1 : 0;
}

main().catch((e: unknown) => {
  console.error(`campaign: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
