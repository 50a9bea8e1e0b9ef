/**
 * The HTTPS front: mutual TLS (identity = SHA-256 of the client certificate's SPKI; KES API keys as
 * bearer tokens are a keyport addition), the route table with per-route body limits and timeouts,
 * KES-style JSON errors for everything, audit and metrics, and graceful shutdown.
 */
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { isKeyportError, oneLine, type ErrorCode } from '../errors.js';
import { identityOfCertificate, parseApiKey } from './identity.js';
import { buildRoutes, codeOfStatus, kesError, policyAllows, type Ctx, type Reply, type ServerState } from './routes.js';
import { createMux } from './mux.js';
import { streamTo } from './logs.js';
import { DEFAULT_CONNECTION_LIMITS } from './config.js';

const socketIdentity = new WeakMap<object, string>();
const bearerIdentity = new Map<string, string>();

function identify(req: IncomingMessage): string {
  const sock = req.socket as TLSSocket;
  let id = socketIdentity.get(sock);
  if (id === undefined) {
    id = '';
    try {
      const peer = sock.getPeerCertificate?.();
      if (peer?.raw) id = identityOfCertificate(peer.raw);
    } catch {
      id = '';
    }
    socketIdentity.set(sock, id);
  }
  if (id) return id;
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer kes:v1:')) {
    const token = auth.slice(7).trim();
    let b = bearerIdentity.get(token);
    if (b === undefined) {
      try {
        b = parseApiKey(token).identity;
      } catch {
        b = '';
      }
      if (bearerIdentity.size > 10_000) bearerIdentity.clear();
      bearerIdentity.set(token, b);
    }
    return b;
  }
  return '';
}

function send(res: ServerResponse, status: number, body?: unknown, extra: Record<string, string> = {}): void {
  if (res.headersSent || res.writableEnded) return;
  if (body === undefined) {
    res.writeHead(status, { 'Content-Length': '0', ...extra });
    res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...extra });
  res.end(text);
}

/** a KES error body, `{"message": …}`, with keyport's stable error code beside it */
const fail = (
  res: ServerResponse,
  status: number,
  message: string,
  extra?: Record<string, string>,
  code: ErrorCode = codeOfStatus(status),
) => send(res, status, { message, code }, extra);

/** Go's http.Redirect with 301, as KES's mux answers a path it spells differently */
function redirect(req: IncomingMessage, res: ServerResponse, location: string): void {
  if (res.headersSent || res.writableEnded) return;
  if (req.method === 'GET' || req.method === 'HEAD') {
    const esc = location.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&#34;', "'": '&#39;' })[c]!);
    const body = `<a href="${esc}">Moved Permanently</a>.\n\n`;
    res.writeHead(301, { Location: location, 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  } else {
    res.writeHead(301, { Location: location, 'Content-Length': '0' });
    res.end();
  }
}

/** what a client may send past a limit before we stop reading and close (answered 413 either way) */
const DRAIN_LIMIT = 16 << 20;

/** readBody's rejection when the client went away (or timed out) before its body was complete: its mistake, not ours */
const CLIENT_GONE = new Error('the client closed the connection before its request body was complete');

/**
 * The body up to `max` bytes; beyond it the rest is read and dropped so the connection stays usable —
 * unless the client announces more than DRAIN_LIMIT: that is refused at once, without waiting for a body
 * it may never send.
 */
function readBody(req: IncomingMessage, max: number): Promise<Buffer | 'too-large' | 'too-large-close'> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > max && declared > DRAIN_LIMIT) return resolve('too-large-close');
    let over = declared > max;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > max) over = true;
      if (over) {
        chunks.length = 0;
        if (n > DRAIN_LIMIT) {
          req.removeAllListeners('data');
          resolve('too-large-close');
        }
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(over ? 'too-large' : Buffer.concat(chunks, n)));
    req.on('error', () => reject(CLIENT_GONE));
  });
}

/** answer and forget a request we refuse before reading its body */
function drain(req: IncomingMessage): Promise<void> {
  return readBody(req, 0).then(
    () => undefined,
    () => undefined,
  );
}

/**
 * KES's TLS policy (kes v0.24 internal/fips, non-FIPS build): TLS 1.3's three suites and, for TLS 1.2,
 * only ECDHE with AEAD ciphers (AES-GCM, ChaCha20-Poly1305) — no CBC, CCM, CCM8, ARIA or static RSA
 */
export const KES_TLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');
/** KES's curves: X25519, P-256, P-384, P-521 */
const KES_TLS_CURVES = 'X25519:P-256:P-384:P-521';

export interface RunningServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

export function createKesServer(state: ServerState): Server {
  const cfg = state.config;
  const routes = buildRoutes(cfg);
  const limits = cfg.connections ?? DEFAULT_CONNECTION_LIMITS;
  state.logs.audit.subscribe(() => state.metrics.auditEvents.inc());
  state.logs.error.subscribe(() => state.metrics.errorEvents.inc());
  const mux = createMux(routes);

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const t0 = process.hrtime.bigint();
    state.metrics.active.inc();
    res.once('close', () => state.metrics.active.dec());
    // routing as KES's Go mux does it (see mux.ts): redirects come before authentication
    const m = mux(req.url ?? '/');
    if ('badUrl' in m) {
      await drain(req);
      return fail(res, 400, 'invalid request URL');
    }
    if ('redirect' in m) {
      await drain(req);
      return redirect(req, res, m.redirect);
    }
    const path = m.path;
    const route = 'route' in m ? m.route : undefined;
    const qi = (req.url ?? '').indexOf('?');
    const query = new URLSearchParams(qi < 0 ? '' : (req.url ?? '').slice(qi + 1));
    const identity = identify(req);
    const finish = (status: number) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      state.metrics.observe(status, seconds);
      // one line per request (log.requests): no body, no query, the path cut short
      state.logs.logRequest({
        time: new Date().toISOString(),
        ip: req.socket.remoteAddress,
        ...(identity ? { identity } : {}),
        method: req.method ?? '-',
        path,
        status,
        ms: seconds * 1000,
      });
      if (route && route.path !== '/v1/log/audit')
        state.logs.audit.emit({
          time: new Date().toISOString(),
          request: { ip: req.socket.remoteAddress, path, ...(identity ? { identity } : {}) },
          response: { code: status, time: Math.round(seconds * 1e6) },
        });
    };
    if (!route) {
      await drain(req);
      fail(res, 404, 'not found');
      return finish(404);
    }
    if (req.method !== route.method && !(req.method === 'POST' && route.method === 'PUT')) {
      await drain(req);
      fail(res, 405, `received method '${req.method}' expected '${route.method}'`, { Accept: route.method });
      return finish(405);
    }
    if (route.auth !== 'none') {
      if (!identity && route.auth === 'verify') {
        await drain(req);
        fail(res, 400, 'tls: client certificate is required', {}, 'AUTH');
        return finish(400);
      }
      if (route.auth === 'verify' && !policyAllows(cfg, identity, path)) {
        await drain(req);
        fail(res, 403, 'not authorized: insufficient permissions');
        return finish(403);
      }
    }
    let timer: NodeJS.Timeout | undefined;
    const cancel = new AbortController();
    res.once('close', () => cancel.abort());
    try {
      const body = await readBody(req, route.maxBody);
      if (body === 'too-large' || body === 'too-large-close') {
        fail(res, 413, 'request body too large', body === 'too-large-close' ? { Connection: 'close' } : {});
        return finish(413);
      }
      const resource = path.length >= route.path.length ? path.slice(route.path.length) : '';
      const ctx: Ctx = { identity, admin: !!cfg.admin && identity === cfg.admin, resource, query, body, state, signal: cancel.signal };
      const work = route.handler(ctx);
      const reply: Reply | 'timeout' =
        route.timeoutMs > 0
          ? await Promise.race([work, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), route.timeoutMs)))])
          : await work;
      if (reply === 'timeout') {
        cancel.abort();
        work.catch(() => undefined);
        fail(res, 503, 'request timed out', {}, 'TIMEOUT');
        return finish(503);
      }
      if ('stream' in reply) {
        res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
        res.flushHeaders();
        // a log stream may be quiet for long: the idle timeout does not apply (TCP keep-alive finds dead peers)
        req.socket.setTimeout(0);
        const dropped = state.metrics.dropped[reply.stream];
        const unsub = streamTo<unknown>(state.logs[reply.stream], res, () => dropped.inc());
        res.on('close', unsub);
        return finish(200);
      }
      if ('text' in reply) {
        res.writeHead(reply.status, { 'Content-Type': reply.contentType, 'Content-Length': Buffer.byteLength(reply.text) });
        res.end(reply.text);
      } else {
        // a handler's own refusal ({"message": …}) gets its code too
        const j = reply.json as { message?: unknown; code?: unknown } | undefined;
        send(
          res,
          reply.status,
          reply.status >= 400 && j?.message !== undefined && j.code === undefined ? { ...j, code: codeOfStatus(reply.status) } : j,
        );
      }
      return finish(reply.status);
    } catch (e) {
      if (e === CLIENT_GONE) {
        // nobody is left to answer: counted and audited as the client's mistake, not logged as a server error
        fail(res, 400, 'incomplete request body');
        return finish(400);
      }
      const subject = path.startsWith('/v1/policy/') ? 'policy' : path.startsWith('/v1/identity/') ? 'identity' : 'key';
      const { status, message, code } = kesError(e, subject);
      if (!isKeyportError(e) || status >= 500)
        state.logs.logError(`${req.method} ${route.path}: ${isKeyportError(e) ? oneLine(e) : 'internal error: ' + oneLine(e)}`);
      fail(res, status, message, {}, code);
      return finish(status);
    } finally {
      if (timer) clearTimeout(timer);
    }
  };

  const server = createServer(
    {
      key: cfg.tls.key,
      cert: cfg.tls.cert,
      ...(cfg.tls.password ? { passphrase: cfg.tls.password } : {}),
      ...(cfg.tls.ca ? { ca: cfg.tls.ca } : {}),
      requestCert: true,
      rejectUnauthorized: !!cfg.tls.ca,
      minVersion: 'TLSv1.2',
      ciphers: KES_TLS_CIPHERS,
      ecdhCurve: KES_TLS_CURVES,
      honorCipherOrder: true,
      // a connection that never finishes (or starts) its TLS handshake is closed
      handshakeTimeout: limits.handshakeTimeoutMs,
      // KES: IdleTimeout 90 s, ReadHeaderTimeout 5 s
      keepAliveTimeout: limits.idleTimeoutMs,
      headersTimeout: 5_000,
      requestTimeout: 60_000,
      connectionsCheckingInterval: 1_000,
      // TCP keep-alive: a peer that vanished without a FIN (half-open) is found and its socket closed
      keepAlive: true,
      keepAliveInitialDelay: 30_000,
    },
    (req, res) => {
      handle(req, res).catch((e) => {
        state.logs.logError(`request failed: ${oneLine(e)}`);
        fail(res, 500, 'internal server error', {}, 'INTERNAL');
      });
    },
  );
  // no socket sits idle past the idle timeout: before its first request, between requests, or in a stalled body
  server.timeout = limits.idleTimeoutMs;
  server.maxConnections = limits.max;
  // a failed or timed-out handshake: close the socket (a listener that only ignored the error left it open for good)
  server.on('tlsClientError', (_e, socket) => socket.destroy());
  // a request node's HTTP parser rejects still gets a KES-style answer
  server.on('clientError', (_e, socket) => {
    if (socket.writable) {
      const body = '{"message":"bad request","code":"INVALID_INPUT"}';
      socket.end(
        `HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
      );
    } else socket.destroy();
  });
  return server;
}
