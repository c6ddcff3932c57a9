/**
 * Main-process side of the contract: every message from the renderer is checked (sender frame,
 * envelope, arguments) before it reaches the engine host; the requests only main can serve
 * (native open dialog, dropped files, file associations) are turned into path grants the engine
 * host accepts. Main never parses an image itself.
 */
import { isAbsolute } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { WebFrameMain } from 'electron';
import {
  parseClientMessage,
  validateArgs,
  type ClientMessage,
  type ServerMessage,
} from '../engine/contract/contract.js';
import { ContractError, toWireError } from '../engine/contract/errors.js';
import { isTrustedSender, type RendererOrigin } from './security.js';

/** Main → engine host. */
export type HostInbound = { t: 'client'; msg: ClientMessage } | { t: 'grant'; id: string; path: string; name: string };

export interface BridgeDeps {
  origin: RendererOrigin;
  /** Post to the engine host. */
  post(m: HostInbound): void;
  /** Post to the renderer. */
  toRenderer(m: ServerMessage): void;
  /** The native open dialog; resolves to a path or null when dismissed. */
  pickFile(): Promise<string | null>;
  /** True when `path` is an existing regular file. */
  isFile(path: string): Promise<boolean>;
}

const MAX_PATH = 4096;

export class Bridge {
  /** Rejected messages (for tests and logs). */
  readonly refused: string[] = [];

  constructor(private readonly deps: BridgeDeps) {}

  /** A message from the renderer over 'q2d:send'. */
  onRendererMessage(frame: WebFrameMain | null | undefined, raw: unknown): void {
    if (!isTrustedSender(frame, this.deps.origin)) {
      this.refused.push(`untrusted sender ${frame?.url ?? '(none)'}`);
      return;
    }
    let msg: ClientMessage;
    try {
      msg = parseClientMessage(raw);
      if (msg.t === 'req') msg = { ...msg, args: validateArgs(msg.method, msg.args) } as ClientMessage;
    } catch (err) {
      const id = typeof (raw as { id?: unknown })?.id === 'number' ? (raw as { id: number }).id : -1;
      this.refused.push(err instanceof Error ? err.message : String(err));
      this.deps.toRenderer({ t: 'res', id, ok: false, error: toWireError(err) });
      return;
    }
    if (msg.t === 'req' && msg.method === 'image.open') {
      const ref = (msg.args as { ref: { kind: string } }).ref;
      if (ref.kind === 'dialog') {
        void this.openWithDialog(msg.id);
        return;
      }
      if (ref.kind === 'root') {
        this.deps.toRenderer({
          t: 'res',
          id: msg.id,
          ok: false,
          error: { code: 'not-available', message: 'the desktop app opens files through the Open dialog' },
        });
        return;
      }
    }
    this.deps.post({ t: 'client', msg });
  }

  private async openWithDialog(id: number): Promise<void> {
    try {
      const path = await this.deps.pickFile();
      if (path === null) throw new ContractError('cancelled', 'cancelled');
      const grant = await this.grant(path);
      this.deps.post({
        t: 'client',
        msg: { t: 'req', id, method: 'image.open', args: { ref: { kind: 'granted', id: grant } } },
      });
    } catch (err) {
      this.deps.toRenderer({ t: 'res', id, ok: false, error: toWireError(err) });
    }
  }

  /** A file dropped on the window (path from the preload's webUtils.getPathForFile). */
  async onDrop(frame: WebFrameMain | null | undefined, path: unknown): Promise<string> {
    if (!isTrustedSender(frame, this.deps.origin)) {
      this.refused.push(`untrusted sender ${frame?.url ?? '(none)'}`);
      throw new ContractError('access-denied', 'unexpected sender');
    }
    if (
      typeof path !== 'string' ||
      path.length === 0 ||
      path.length > MAX_PATH ||
      path.includes('\0') ||
      !isAbsolute(path)
    ) {
      this.refused.push('bad dropped path');
      throw new ContractError('invalid-argument', 'a dropped file must be a local file', { field: 'path' });
    }
    return this.grant(path);
  }

  /** Let the engine host read `path` (a file the user chose); returns the grant id for FileRef {kind:'granted'}. */
  async grant(path: string): Promise<string> {
    if (!(await this.deps.isFile(path))) throw new ContractError('not-found', `not a regular file: ${path}`);
    const id = randomBytes(12).toString('base64url');
    const name = path.split(/[\\/]/).pop() ?? path;
    this.deps.post({ t: 'grant', id, path, name });
    return id;
  }
}
