// `npm test`: lint (format, lint rules, the floors), build what the tests drive (the CLI, the
// renderer), run every Vitest test, and close with the plain line `N passed, N failed` that CI reads.
import { spawnSync } from 'node:child_process';
import { readFileSync, mkdirSync } from 'node:fs';

const run = (cmd, args) => spawnSync(cmd, args, { stdio: 'inherit', shell: false });
for (const script of ['lint', 'build:cli', 'build:renderer']) {
  const r = run('npm', ['run', '--silent', script]);
  if (r.status !== 0) {
    console.log('0 passed, 1 failed');
    process.exit(1);
  }
}
mkdirSync('test-results', { recursive: true });
const extra = process.argv.slice(2);
const r = run('npx', [
  'vitest',
  'run',
  '--reporter=default',
  '--reporter=json',
  '--outputFile.json=test-results/vitest.json',
  ...extra,
]);
let passed = 0;
let failed = 0;
try {
  const report = JSON.parse(readFileSync('test-results/vitest.json', 'utf8'));
  passed = report.numPassedTests;
  failed = report.numFailedTests + (report.numRuntimeErrorTestSuites ?? 0);
  // A file that failed outside any test (its setup, or collecting it) leaves its tests skipped:
  // count it as a failure so the closing line never reads "0 failed" for a failed run.
  for (const f of report.testResults ?? [])
    if (f.status === 'failed' && !(f.assertionResults ?? []).some((a) => a.status === 'failed')) failed++;
} catch {
  failed = Math.max(failed, 1);
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(r.status === 0 && failed === 0 ? 0 : 1);
