/**
 * The token gate of `serve`: every HTTP request and the WebSocket upgrade must carry the random
 * token, either in the `?token=` of the URL `serve` printed or, after that first load, in an
 * HttpOnly, SameSite=Strict cookie scoped to this port (cookies ignore ports, so the name holds it).
 */
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** The one-line page a request without the token gets. */
export const TOKEN_REQUIRED_PAGE =
  '<!doctype html><meta charset="utf-8"><title>qcow2-doctor</title><p>Access denied: open the URL that <code>qcow2-doctor serve</code> printed (it carries the access token).</p>\n';

export class AccessGate {
  private readonly tokenBytes: Buffer;
  constructor(
    readonly token: string,
    private readonly port: () => number,
  ) {
    this.tokenBytes = Buffer.from(token);
  }

  get cookieName(): string {
    return `q2d_token_${this.port()}`;
  }

  matches(t: string | null | undefined): boolean {
    if (!t) return false;
    const b = Buffer.from(t);
    return b.length === this.tokenBytes.length && timingSafeEqual(b, this.tokenBytes);
  }

  /** The token this request carries in its cookie header, if any. */
  cookieToken(req: IncomingMessage): string | undefined {
    for (const part of (req.headers.cookie ?? '').split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === this.cookieName) return part.slice(eq + 1).trim();
    }
    return undefined;
  }

  /** 'query' when the URL carries the token (set the cookie), 'cookie', or undefined (refuse). */
  check(req: IncomingMessage, url: URL): 'query' | 'cookie' | undefined {
    if (this.matches(url.searchParams.get('token'))) return 'query';
    if (this.matches(this.cookieToken(req))) return 'cookie';
    return undefined;
  }

  setCookieHeader(): string {
    return `${this.cookieName}=${this.token}; HttpOnly; SameSite=Strict; Path=/`;
  }
}
