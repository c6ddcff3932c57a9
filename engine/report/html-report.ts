// The report as one self-contained HTML file: inline CSS, the cluster map as an inline PNG, no
// scripts and no external resources (a CSP forbids them), so it opens anywhere and can be attached
// to a ticket as is.
import { formatBytes } from '../contract/units.js';
import type { FindingGroup, ReportData } from './report-data.js';
import type { MapPicture } from './cluster-map-picture.js';
import { pngDataUrl } from './png.js';

const esc = (s: string | number): string =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

const VERDICT_COLORS: Record<string, string> = {
  clean: '#1e8e3e',
  leaks: '#b7791f',
  corrupt: '#c5221f',
  unreadable: '#7b1c1c',
};
const VERDICT_TITLES: Record<string, string> = {
  clean: 'Clean',
  leaks: 'Leaks only',
  corrupt: 'Damaged',
  unreadable: 'Could not be checked completely',
};
const SEVERITY_WORDS: Record<string, string> = { error: 'error', leak: 'leak', warning: 'warning', info: 'note' };

const CSS = `
*{box-sizing:border-box}body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2125;background:#f6f7f9}
main{max-width:1000px;margin:0 auto;padding:24px}h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d8dce1;padding-bottom:4px}
.meta{color:#5b6470;font-size:13px}.verdict{border-radius:10px;color:#fff;padding:18px 22px;margin:18px 0}
.verdict .word{font-size:26px;font-weight:700}.verdict .headline{font-size:17px;opacity:.95}.verdict ul{margin:10px 0 0;padding-left:20px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:14px}th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e6e9ed;vertical-align:top}
th{background:#eef1f4;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.kv td:first-child{color:#5b6470;width:34%}.sev{display:inline-block;border-radius:4px;padding:0 6px;font-size:12px;color:#fff}
.sev-error{background:#c5221f}.sev-leak{background:#b7791f}.sev-warning{background:#7a5cc4}.sev-note{background:#5b6470}
.group{background:#fff;border:1px solid #e0e3e7;border-radius:8px;padding:12px 16px;margin:10px 0}.group h3{margin:0 0 6px;font-size:16px}
.group p{margin:4px 0}.fix{color:#1d4f91}code,pre{font:12.5px/1.45 ui-monospace,SFMono-Regular,Menlo,monospace}
pre{background:#fff;border:1px solid #e0e3e7;border-radius:6px;padding:10px;overflow:auto;white-space:pre-wrap}
details summary{cursor:pointer;color:#1d4f91}.map img{image-rendering:pixelated;display:block;border:1px solid #d8dce1;background:#14161a}.mapgrid{display:grid;grid-template-columns:auto auto;width:max-content;max-width:100%;overflow-x:auto;font:11px ui-monospace,monospace;color:#4a5260}.ruler{position:relative}.ruler span{position:absolute;white-space:nowrap}.rtop{height:28px}.rtop span{bottom:2px;border-left:1px solid #9aa3ad;padding-left:3px;line-height:12px}.rleft{width:96px}.rleft span{right:6px;line-height:11px;text-align:right}
.legend{display:flex;flex-wrap:wrap;gap:6px 14px;margin:8px 0;font-size:13px}.legend span.sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:16px}.note{color:#5b6470;font-size:13px}footer{margin:32px 0 8px;color:#5b6470;font-size:13px}
`;

/** The picture with rulers: clusters and bytes along the top (offset within a row), each row's first cluster and offset on the left. */
function mapWithRulers(map: MapPicture, clusterSize: number): string {
  const per = map.clustersPerCell;
  const rows = Math.round(map.height / map.cellPx);
  const colStep = niceStep(64 / map.cellPx);
  const rowStep = niceStep(26 / map.cellPx);
  const top: string[] = [];
  for (let c = 0; c < map.cols; c += colStep)
    top.push(`<span style="left:${c * map.cellPx}px">+${c * per}<br>+${formatBytes(c * per * clusterSize)}</span>`);
  const left: string[] = [];
  for (let r = 0; r < rows; r += rowStep) {
    const cluster = r * map.cols * per;
    left.push(`<span style="top:${r * map.cellPx}px">#${cluster}<br>0x${(cluster * clusterSize).toString(16)}</span>`);
  }
  return [
    '<div class="mapgrid"><div></div>',
    `<div class="ruler rtop" style="width:${map.width}px">${top.join('')}</div>`,
    `<div class="ruler rleft" style="height:${map.height}px">${left.join('')}</div>`,
    `<img alt="Map of the image's clusters by role" width="${map.width}" height="${map.height}" src="${pngDataUrl(map.png)}">`,
    '</div>',
  ].join('');
}

const niceStep = (min: number): number => {
  let n = 1;
  while (n < min) n *= 2;
  return n;
};

export function renderHtmlReport(data: ReportData, map?: MapPicture): string {
  const v = data.verdict;
  const img = data.image;
  const color = VERDICT_COLORS[v.word] ?? '#5b6470';
  const out: string[] = [];
  out.push(
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">`,
    '<meta name="viewport" content="width=device-width,initial-scale=1">',
    `<title>qcow2-doctor report: ${esc(baseName(img.path))} — ${esc(VERDICT_TITLES[v.word] ?? v.word)}</title>`,
    `<style>${CSS}</style></head><body><main>`,
  );
  out.push(
    `<h1>Disk image report: ${esc(baseName(img.path))}</h1>`,
    `<div class="meta">${esc(img.path)} · made ${esc(data.generatedAt.replace('T', ' ').replace(/\.\d+Z$/, ' UTC'))} by ${esc(data.tool.name)} ${esc(data.tool.version)}</div>`,
  );

  const after = data.repair?.applied ? data.repair.after : undefined;
  if (after) {
    // After a repair, what matters first is the state the repair left.
    const av = after.verdict;
    out.push(
      `<section class="verdict" id="repair-verdict" data-verdict="${esc(av.word)}" style="background:${VERDICT_COLORS[av.word] ?? '#5b6470'}">`,
      `<div class="word">After the repair: ${esc(VERDICT_TITLES[av.word] ?? av.word)}</div><div class="headline">${esc(data.repair!.target ?? img.path)}</div><ul>`,
      ...av.sentences.map((s) => `<li>${esc(s)}</li>`),
      '</ul></section>',
    );
  }
  out.push(
    `<section class="verdict" id="verdict" data-verdict="${esc(v.word)}" style="background:${color}">`,
    `<div class="word">${after ? 'Before the repair: ' : ''}${esc(VERDICT_TITLES[v.word] ?? v.word)}</div><div class="headline">${esc(v.headline)}</div><ul>`,
    ...v.sentences.map((s) => `<li>${esc(s)}</li>`),
    '</ul></section>',
  );

  out.push(
    '<h2>Summary</h2><table class="kv">',
    row('Leaked clusters', data.check.counters.leaks),
    row('Errors (corruptions)', data.check.counters.corruptions),
    row('Internal errors during the check', data.check.counters.checkErrors),
    row('Check time', `${data.check.elapsedSeconds.toFixed(3)} s`),
    '</table>',
  );

  out.push(
    '<h2>Image</h2><table class="kv">',
    row('File', img.path),
    row('File size', `${formatBytes(img.fileSize)} (${img.fileSize} bytes)`),
    row('Virtual disk size', `${formatBytes(img.virtualSize)} (${img.virtualSize} bytes)`),
    row('Format', `qcow2 version ${img.version} (compat ${img.version === 2 ? '0.10' : '1.1'})`),
    row('Cluster size', `${formatBytes(img.clusterSize)}`),
    row('Refcount width', `${img.refcountBits} bits`),
    row('Closed cleanly', img.dirty ? 'no (dirty flag set)' : 'yes'),
    row('Marked corrupt', img.corrupt ? 'yes' : 'no'),
    row('Lazy refcounts', yes(img.lazyRefcounts)),
    row('Extended L2 entries', yes(img.extendedL2)),
    row('Compression', img.compression),
    row('Encryption', img.encryption),
    row(
      'Backing file',
      img.backingFile !== undefined
        ? `${img.backingFile}${img.backingFormat ? ` (${img.backingFormat})` : ''}`
        : 'none',
    ),
    ...(img.externalDataFile !== undefined ? [row('External data file', img.externalDataFile)] : []),
    row('Internal snapshots', img.snapshots),
    row('Persistent bitmaps', img.bitmaps),
    '</table>',
  );

  out.push('<h2>Findings</h2>');
  if (data.findings.length === 0) out.push('<p>Nothing to report: every table and count agrees.</p>');
  for (const g of data.findings) out.push(group(g));

  if (map) {
    out.push(
      '<h2>Cluster map</h2><div class="map">',
      `<p class="note">Each square is ${map.clustersPerCell === 1 ? 'one cluster' : `${map.clustersPerCell} clusters (showing the most telling one)`} of the file, in file order, left to right and top to bottom.</p>`,
      mapWithRulers(map, data.image.clusterSize),
      '<div class="legend">',
      ...map.legend.map(
        (l) => `<span><span class="sw" style="background:${l.color}"></span>${esc(l.name)}: ${l.clusters}</span>`,
      ),
      '</div></div>',
    );
  }

  if (data.repair) out.push(...repairSection(data));

  out.push('<h2>What qemu-img check says</h2>', `<pre>${esc(data.check.qemuSummary)}</pre>`);
  out.push(
    `<footer>Made by ${esc(data.tool.name)} ${esc(data.tool.version)} on ${esc(data.generatedAt)}. `,
    'The counts above are those of <code>qemu-img check</code>; findings marked "beyond QEMU" are extra diagnostics that do not change them.</footer>',
  );
  out.push('</main></body></html>\n');
  return out.join('\n');
}

function row(k: string, v: string | number): string {
  return `<tr><td>${esc(k)}</td><td>${esc(v)}</td></tr>`;
}

const yes = (b: boolean): string => (b ? 'yes' : 'no');

function baseName(p: string): string {
  const i = Math.max(p.lastIndexOf('/'), p.lastIndexOf('\\'));
  return i >= 0 ? p.slice(i + 1) : p;
}

function group(g: FindingGroup): string {
  const sev = SEVERITY_WORDS[g.severity] ?? g.severity;
  const lines = [
    `<div class="group" id="kind-${esc(g.kind)}" data-kind="${esc(g.kind)}">`,
    `<h3><span class="sev sev-${esc(sev)}">${esc(sev)}</span> ${esc(g.title)} — ${g.clusters}${g.beyondQemu ? ' <span class="note">(beyond QEMU)</span>' : ''}</h3>`,
    `<p>${esc(g.explanation)}</p>`,
    `<p class="fix"><b>Fix:</b> ${esc(g.fix)}</p>`,
  ];
  if (g.examples.length) {
    lines.push(
      `<details><summary>${g.records > g.examples.length ? `First ${g.examples.length} of ${g.records}` : `${g.records}`} record${g.records === 1 ? '' : 's'}</summary><table><tr><th>Clusters</th><th>Refcount / references</th><th>QEMU says</th></tr>`,
    );
    for (const e of g.examples) {
      const where =
        e.firstCluster === undefined
          ? '—'
          : e.count > 1
            ? `${e.firstCluster}–${e.firstCluster + e.count - 1}`
            : `${e.firstCluster}`;
      const rr =
        e.refcount !== undefined || e.references !== undefined ? `${e.refcount ?? '?'} / ${e.references ?? '?'}` : '—';
      lines.push(
        `<tr><td class="num">${esc(where)}</td><td>${esc(rr)}</td><td><code>${esc(e.qemuMessage ?? '')}</code></td></tr>`,
      );
    }
    lines.push('</table></details>');
  }
  lines.push('</div>');
  return lines.join('\n');
}

function repairSection(data: ReportData): string[] {
  const r = data.repair!;
  const out = ['<h2>Repair</h2>'];
  out.push(
    '<table class="kv">',
    row('Mode', r.mode === 'all' ? 'repair everything (-r all)' : 'repair leaks only (-r leaks)'),
    row('Applied', r.applied ? 'yes' : 'no (plan only)'),
    ...(r.target !== undefined ? [row('Repaired file', r.target)] : []),
    ...(r.journalPath !== undefined ? [row('Undo journal', r.journalPath)] : []),
    row('Metadata writes', r.writes),
    row('Refcount structure rebuilt', yes(r.rebuild)),
    row('Leaks fixed', r.leaksFixed),
    row('Corruptions fixed', r.corruptionsFixed),
    '</table>',
  );
  if (r.failed !== undefined) out.push(`<p><b>The repair could not run:</b> ${esc(r.failed)}</p>`);
  if (r.fixes.length) {
    out.push('<details><summary>What the repair changes</summary><ul>');
    for (const f of r.fixes.slice(0, 200))
      out.push(
        `<li>${esc(f.text)}${f.differsFromQemu ? ' <span class="note">(differs from qemu-img on purpose)</span>' : ''}</li>`,
      );
    if (r.fixes.length > 200) out.push(`<li>… and ${r.fixes.length - 200} more</li>`);
    out.push('</ul></details>');
  }
  if (r.refusals.length) {
    out.push('<p><b>Not repaired (a person must decide):</b></p><ul>');
    for (const x of r.refusals) out.push(`<li>${esc(x.what)} — ${esc(x.decide)}</li>`);
    out.push('</ul>');
  }
  const before = data.check.counters;
  if (r.after) {
    const a = r.after.counters;
    out.push(
      '<div class="cols"><div><h3>Before</h3><table class="kv">',
      row('Errors', before.corruptions),
      row('Leaked clusters', before.leaks),
      row('Internal errors', before.checkErrors),
      '</table></div><div><h3>After</h3><table class="kv">',
      row('Errors', a.corruptions),
      row('Leaked clusters', a.leaks),
      row('Internal errors', a.checkErrors),
      '</table></div></div>',
      `<p id="after-verdict" data-verdict="${esc(r.after.verdict.word)}"><b>After the repair:</b> ${esc(r.after.verdict.sentences.join(' '))}</p>`,
    );
  } else {
    out.push(
      `<p>Expected after the repair: ${r.expected.remainingCorruptions} errors, ${r.expected.remainingLeaks} leaked clusters.</p>`,
    );
  }
  return out;
}
