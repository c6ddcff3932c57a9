import { execFileSync } from 'node:child_process';

/** The tests judge the engine against real QEMU: refuse to run without it rather than skip. */
export default function setup(): void {
  for (const tool of ['qemu-img', 'qemu-io']) {
    try {
      execFileSync(tool, ['--version'], { stdio: 'ignore' });
    } catch {
      throw new Error(`${tool} is required by the tests (apt-get install -y qemu-utils)`);
    }
  }
}
