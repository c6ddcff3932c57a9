/**
 * `qcow2-doctor serve`: the built renderer over HTTP and the contract over a WebSocket, for support
 * staff triaging images through a browser (and for the end-to-end tests). Bound to 127.0.0.1 by
 * default. The WebSocket needs the random token printed in the URL and a same-origin Origin; the
 * Host header must name this server (DNS rebinding); only files under --root can be opened.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { readFile, realpath, stat } from 'node:fs/promises';
import { extname, resolve, sep } from 'node:path';
import type { Duplex } from 'node:stream';
import { networkInterfaces } from 'node:os';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import type { ServerMessage } from '../contract/contract.js';
import { decodeMessage, encodeMessage } from '../contract/wire.js';
import { AccessGate, TOKEN_REQUIRED_PAGE } from './access-gate.js';
import { createServeHost } from './serve-host.js';
import { listSamples } from './samples.js';
import { Service } from './service.js';

export interface ServeOptions {
  root: string;
  port?: number;
  host?: string;
  /** The built renderer (dist/renderer). */
  staticDir: string;
  /** Bundled samples (resources/samples); optional. */
  samplesDir?: string;
  /** Fixed token (tests); random otherwise. */
  token?: string;
  /** Tests only: slow every check by this many ms. */
  testCheckDelayMs?: number;
}

export interface RunningServer {
  url: string;
  port: number;
  token: string;
  service: Service;
  close(): Promise<void>;
}

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

/** The CSP of the served page: our own scripts and styles, a WebSocket to this origin, nothing remote. */
export const SERVE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Incoming WebSocket messages are small requests; refuse anything larger. */
const MAX_CLIENT_MESSAGE = 1024 * 1024;

export async function startServer(opts: ServeOptions): Promise<RunningServer> {
  const samples = await listSamples(opts.samplesDir);
  const host = await createServeHost(opts.root, samples);
  if (opts.testCheckDelayMs) host.testCheckDelayMs = opts.testCheckDelayMs;
  const service = new Service(host);
  const token = opts.token ?? randomBytes(24).toString('base64url');
  const gate = new AccessGate(token, () => port);
  const staticRoot = await realpath(opts.staticDir).catch(() => resolve(opts.staticDir));
  const bindHost = opts.host ?? '127.0.0.1';
  let port = 0;

  // Host headers (and Origins) naming this server: loopback names, the bound address, and — when
  // bound to every interface — each local interface address. Anything else is DNS rebinding.
  const hostNames = (): string[] => {
    const names = ['127.0.0.1', 'localhost', '[::1]', bindHost.includes(':') ? `[${bindHost}]` : bindHost];
    if (bindHost === '0.0.0.0' || bindHost === '::')
      for (const list of Object.values(networkInterfaces()))
        for (const a of list ?? []) names.push(a.family === 'IPv6' ? `[${a.address}]` : a.address);
    return names;
  };
  let allowed: Set<string> | undefined;
  const allowedHosts = (): Set<string> => (allowed ??= new Set(hostNames().map((h) => `${h}:${port}`)));

  // A failure in a request must answer that request, never reach the process.
  const server: Server = createServer((req, res) => {
    serveStatic(req, res).catch((err: unknown) => {
      process.stderr.write(`qcow2-doctor serve: ${req.method} failed: ${(err as Error)?.message ?? String(err)}\n`);
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end();
    });
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_CLIENT_MESSAGE });

  async function serveStatic(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const headers: Record<string, string> = {
      'Content-Security-Policy': SERVE_CSP,
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
      'X-Frame-Options': 'DENY',
      'Cache-Control': 'no-store',
      'Cross-Origin-Opener-Policy': 'same-origin',
    };
    if (!allowedHosts().has(req.headers.host ?? '')) {
      res.writeHead(421, headers).end('misdirected request');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, headers).end();
      return;
    }
    let url: URL;
    let rel: string;
    try {
      url = new URL(req.url ?? '/', 'http://x');
      rel = decodeURIComponent(url.pathname);
    } catch {
      res.writeHead(400, headers).end('bad request: the path is not valid percent-encoding');
      return;
    }
    const auth = gate.check(req, url);
    if (!auth) {
      res.writeHead(401, { ...headers, 'Content-Type': 'text/html; charset=utf-8' }).end(TOKEN_REQUIRED_PAGE);
      return;
    }
    if (auth === 'query') Object.assign(headers, { 'Set-Cookie': gate.setCookieHeader() });
    if (rel === '/' || rel === '') rel = '/index.html';
    const file = resolve(staticRoot, `.${rel}`);
    if (!file.startsWith(staticRoot + sep)) {
      res.writeHead(404, headers).end();
      return;
    }
    try {
      const real = await realpath(file);
      if (!real.startsWith(staticRoot + sep) || !(await stat(real)).isFile()) throw new Error('not a file');
      const body = await readFile(real);
      res.writeHead(200, {
        ...headers,
        'Content-Type': MIME[extname(real)] ?? 'application/octet-stream',
        'Content-Length': body.length,
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch {
      res.writeHead(404, headers).end('not found');
    }
  }

  const refuse = (socket: Duplex, status: number, text: string): void => {
    socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  };

  server.on('upgrade', (req, socket, head) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://x');
    } catch {
      return refuse(socket, 400, 'Bad Request');
    }
    if (url.pathname !== '/ws') return refuse(socket, 404, 'Not Found');
    if (!allowedHosts().has(req.headers.host ?? '')) return refuse(socket, 421, 'Misdirected Request');
    if (!gate.check(req, url)) return refuse(socket, 401, 'Unauthorized');
    const origin = req.headers.origin;
    if (origin === undefined || !allowedHosts().has(origin.replace(/^http:\/\//, '')) || !origin.startsWith('http://'))
      return refuse(socket, 403, 'Forbidden');
    wss.handleUpgrade(req, socket, head, (ws) => attach(ws));
  });

  function attach(ws: WebSocket): void {
    const conn = service.connect((m: ServerMessage) => {
      if (ws.readyState === ws.OPEN) ws.send(encodeMessage(m));
    });
    ws.on('message', (data: RawData, isBinary: boolean) => {
      let msg: unknown;
      try {
        const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
        msg = decodeMessage(isBinary ? new Uint8Array(buf) : buf.toString('utf8'));
      } catch {
        ws.send(
          encodeMessage({
            t: 'res',
            id: -1,
            ok: false,
            error: { code: 'invalid-argument', message: 'message is not valid JSON' },
          }),
        );
        return;
      }
      conn.receive(msg);
    });
    ws.on('close', () => conn.close());
    ws.on('error', () => conn.close());
  }

  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 0, bindHost, () => ok());
  });
  const addr = server.address();
  port = typeof addr === 'object' && addr ? addr.port : 0;
  const shownHost = bindHost.includes(':') ? `[${bindHost}]` : bindHost;
  return {
    url: `http://${shownHost}:${port}/?token=${token}`,
    port,
    token,
    service,
    close: async () => {
      for (const c of wss.clients) c.terminate();
      wss.close();
      await new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections?.();
      await service.dispose();
    },
  };
}
