/**
 * The last line of defence of a long-running host (`serve`): a promise rejection nobody handled is
 * logged, one line, and the process keeps answering its other clients instead of exiting.
 */
let installed = false;

export function installRejectionGuard(log: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): void {
  if (installed) return;
  installed = true;
  process.on('unhandledRejection', (reason: unknown) => {
    const text = reason instanceof Error ? (reason.stack ?? reason.message) : String(reason);
    log(`qcow2-doctor: unexpected failure in a request (the server goes on): ${text.split('\n')[0]}`);
  });
}
