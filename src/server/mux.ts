/**
 * Request routing exactly as KES v0.24.0's Go `http.ServeMux` does it (KES's go.mod says go 1.21, so the
 * 1.21 mux): the URL path is decoded, then
 *   1. a path one '/' short of a subtree route ('/v1/key/list' for '/v1/key/list/') is answered 301 to the
 *      route's spelling, query kept;
 *   2. a path that is not clean ('//', '.', '..' segments) is answered 301 to its cleaned form;
 *   3. otherwise the exact route, or the longest subtree route ('…/') that prefixes the path, or none (404).
 * Authentication and the policy check run only after routing, so they always see the path a route serves:
 * a client that follows the redirect (MinIO's KES client does) is checked on '/v1/key/list/', never on
 * '/v1/key/list'.
 */
import type { Route } from './routes.js';

export type MuxResult = { route: Route; path: string } | { redirect: string } | { notFound: true; path: string } | { badUrl: true };

/** Go's path.Clean, keeping a trailing slash as net/http's cleanPath does */
export function cleanPath(p: string): string {
  if (p === '') return '/';
  if (p[0] !== '/') p = `/${p}`;
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  let np = `/${out.join('/')}`;
  if (p.endsWith('/') && np !== '/') np += '/';
  return np;
}

/** net/url's escaping of a path (mode encodePath): what Go writes into a redirect's Location */
export function escapePath(p: string): string {
  let s = '';
  for (const b of Buffer.from(p, 'utf8')) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9\-_.~$&+,/:;=@]/.test(c)) s += c;
    else s += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return s;
}

export function createMux(routes: readonly Route[]): (rawUrl: string) => MuxResult {
  const exact = new Map<string, Route>();
  const subtree: Route[] = [];
  for (const r of routes) {
    if (r.path.endsWith('/')) subtree.push(r);
    else exact.set(r.path, r);
  }
  subtree.sort((a, b) => b.path.length - a.path.length);
  const subtreePaths = new Set(subtree.map((r) => r.path));

  return (rawUrl: string) => {
    const q = rawUrl.indexOf('?');
    const rawPath = q < 0 ? rawUrl : rawUrl.slice(0, q);
    const rawQuery = q < 0 ? '' : rawUrl.slice(q + 1);
    let path: string;
    try {
      // Go's URL parser: the request-target must be an absolute path; the path is percent-decoded
      if (!rawPath.startsWith('/')) return { badUrl: true };
      path = decodeURIComponent(rawPath);
    } catch {
      return { badUrl: true };
    }
    const location = (p: string) => escapePath(p) + (rawQuery ? `?${rawQuery}` : '');
    const clean = cleanPath(path);
    // (1) one slash short of a subtree route
    if (!exact.has(clean) && !clean.endsWith('/') && subtreePaths.has(`${clean}/`)) return { redirect: location(`${clean}/`) };
    // (2) not clean
    if (clean !== path) return { redirect: location(clean) };
    const route = exact.get(path) ?? subtree.find((r) => path.startsWith(r.path));
    return route ? { route, path } : { notFound: true, path };
  };
}
