/**
 * Store / KMS addresses in the smallstep style: `scheme:key=value;key=value`, or `scheme:PATH` for
 * path-like stores, RFC 7512 `?query` attributes for pkcs11, and a whole connection string for postgres.
 * The generic syntax only: the typed addresses (kms/address.ts KmsAddress, store/address.ts
 * StoreAddress) use it to parse an operator's string once, at the edge, and validate it per backend;
 * nothing else parses URI strings.
 */
import { err } from '../errors.js';

export interface ParsedUri {
  scheme: string;
  /** bare path after the scheme (sqlite:PATH, fs:DIR, local:PATH, driver:MODULE) */
  path?: string;
  /** key=value attributes (path and query attributes merged; query wins) */
  params: Record<string, string>;
  raw: string;
}

const SCHEME_RE = /^([a-z][a-z0-9+-]*):(.*)$/s;

function decode(v: string, raw: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    throw err('INVALID_INPUT', `bad percent-encoding in '${redactUri(raw)}'`);
  }
}

export function parseUri(raw: string): ParsedUri {
  const m = SCHEME_RE.exec(raw.trim());
  if (!m) throw err('USAGE', `'${redactUri(raw)}' is not a store address: use scheme:key=value;… (e.g. sqlite:keys.db) or a .yaml file`);
  const scheme = m[1]!;
  let rest = m[2]!;
  const params: Record<string, string> = {};
  if (scheme === 'postgres' || scheme === 'postgresql') {
    // the whole rest is a libpq / URL connection string
    if (!rest) throw err('USAGE', `postgres: needs a connection string, e.g. postgres:postgresql://user@127.0.0.1/keyport`);
    return { scheme: 'postgres', path: rest.startsWith('//') ? `postgresql:${rest}` : rest, params, raw };
  }
  let query = '';
  const q = rest.indexOf('?');
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  let path: string | undefined;
  const parts = rest === '' ? [] : rest.split(';');
  for (const [i, part] of parts.entries()) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq < 0) {
      if (i === 0) {
        path = part;
        continue;
      }
      throw err('USAGE', `'${part}' in '${redactUri(raw)}' is not key=value`);
    }
    const k = part.slice(0, eq).trim();
    if (!k) throw err('USAGE', `empty attribute name in '${redactUri(raw)}'`);
    params[k] = decode(part.slice(eq + 1), raw);
  }
  for (const part of query.split('&')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    if (eq < 0) throw err('USAGE', `'${part}' in '${redactUri(raw)}' is not key=value`);
    params[part.slice(0, eq)] = decode(part.slice(eq + 1), raw);
  }
  return { scheme, path, params, raw };
}

/** Hide secrets (pin-value, passwords, secret keys) in a URI this parser quotes in its own messages. */
function redactUri(raw: string): string {
  return raw
    .replace(
      /((?:pin-value|pin|password|secret|secret-key|secret-access-key|session-token|access-token|token|client-secret|api-key)=)[^;&?]*/gi,
      '$1***',
    )
    .replace(/(\/\/[^:/@]+:)[^@]*@/, '$1***@');
}

export function formatUri(scheme: string, params: Record<string, string | undefined>, path?: string): string {
  const parts: string[] = [];
  if (path) parts.push(path);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) parts.push(`${k}=${v.replace(/[;%?]/g, encodeURIComponent)}`);
  return `${scheme}:${parts.join(';')}`;
}
