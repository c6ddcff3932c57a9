// `check --report FILE` and the app's "Save report": a self-contained HTML report or a JSON report,
// chosen by the file's extension.
import { writeOutputFile } from '../io/output-file.js';
import type { CheckResult } from '../check/types.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import { checkImage } from '../check/index.js';
import { buildReportData, type ReportExtras } from './report-data.js';
import { renderHtmlReport } from './html-report.js';
import { clusterMapPicture, type MapPicture } from './cluster-map-picture.js';

export type ReportFormat = 'html' | 'json';

/** The report format for a file name, or a one-line refusal. */
export function reportFormatOf(path: string): ReportFormat {
  if (/\.html?$/i.test(path)) return 'html';
  if (/\.json$/i.test(path)) return 'json';
  throw new Error(`report file must end in .html or .json: ${path}`);
}

/** The report's text. Builds the role map with a second pass when the check did not keep one. */
export async function reportContent(
  format: ReportFormat,
  result: CheckResult,
  image: Qcow2Image,
  extras: ReportExtras = {},
): Promise<string> {
  const data = buildReportData(result, image, extras);
  let roleMap = result.roleMap;
  if (!roleMap && result.failed === undefined) {
    try {
      roleMap = (await checkImage(image, { roleMap: true })).roleMap;
    } catch {
      roleMap = undefined; // the report is still useful without its picture
    }
  }
  const map: MapPicture | undefined = roleMap && roleMap.length > 0 ? clusterMapPicture(roleMap) : undefined;
  if (format === 'html') return renderHtmlReport(data, map);
  const json = {
    ...data,
    map: map ? { clustersPerCell: map.clustersPerCell, legend: map.legend } : undefined,
    anomalies: result.anomalies,
  };
  return `${JSON.stringify(json, null, 2)}\n`;
}

/** Write the report of `result` for `image` to `path` (.html or .json), replacing it atomically. */
export async function writeReportFile(
  path: string,
  result: CheckResult,
  image: Qcow2Image,
  extras: ReportExtras = {},
): Promise<void> {
  const format = reportFormatOf(path);
  const text = await reportContent(format, result, image, extras);
  await writeOutputFile(path, text, { replace: true });
}
