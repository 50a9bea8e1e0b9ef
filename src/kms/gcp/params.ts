/** gcpkms: URI parameters and key names, parsed once (pure; unit-tested without a KMS). */
import { err } from '../../errors.js';

export interface GcpParams {
  project: string;
  location: string;
  keyring: string;
  /** projects/P/locations/L/keyRings/K */
  ring: string;
  endpoint?: { host: string; port: number; tls: boolean };
  credentials?: string;
  protection: 'SOFTWARE' | 'HSM';
  timeoutMs: number;
}

export const ID_RE = /^[a-zA-Z0-9_-]{1,63}$/;
const FULL_RE = /^projects\/([^/]+)\/locations\/([^/]+)\/keyRings\/([^/]+)\/cryptoKeys\/([^/]+)(?:\/cryptoKeyVersions\/([^/]+))?$/;

/** `host:port`, `http://host:port` (plaintext, no Google auth) or `https://host[:port]` (TLS + auth) */
export function parseGcpEndpoint(v: string): { host: string; port: number; tls: boolean } {
  const bad = () => err('USAGE', `gcpkms: endpoint '${v}' is not host:port, http://host:port or https://host[:port]`);
  let tls = false;
  let rest = v.trim();
  const m = /^(https?):\/\/(.*)$/i.exec(rest);
  if (m) {
    tls = m[1]!.toLowerCase() === 'https';
    rest = m[2]!.replace(/\/+$/, '');
  }
  if (!rest || /[/\s?#@]/.test(rest)) throw bad();
  let host: string;
  let portStr: string | undefined;
  const v6 = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(rest);
  if (v6) {
    host = v6[1]!;
    portStr = v6[2];
  } else {
    const parts = rest.split(':');
    if (parts.length > 2) throw bad();
    host = parts[0]!;
    portStr = parts[1];
  }
  if (!host) throw bad();
  let port = tls ? 443 : NaN;
  if (portStr !== undefined) port = Number(portStr);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    if (!tls && portStr === undefined) throw err('USAGE', `gcpkms: endpoint '${v}' needs a port (host:port) for plaintext gRPC`);
    throw bad();
  }
  return { host, port, tls };
}

export function parseGcpParams(params: Record<string, string>): GcpParams {
  const project = params['project'] || process.env.GOOGLE_CLOUD_PROJECT || '';
  const location = params['location'] || 'global';
  const keyring = params['keyring'] || params['key-ring'] || '';
  if (!project) throw err('USAGE', 'gcpkms: no project: add project=P to the URI (or set GOOGLE_CLOUD_PROJECT)');
  if (!keyring) throw err('USAGE', 'gcpkms: no key ring: add keyring=K to the URI');
  for (const [what, v] of [
    ['project', project],
    ['location', location],
    ['keyring', keyring],
  ] as const) {
    if (!/^[a-zA-Z0-9_.:-]{1,100}$/.test(v)) throw err('USAGE', `gcpkms: ${what} '${v}' has characters GCP does not allow`);
  }
  if (!ID_RE.test(keyring)) throw err('USAGE', `gcpkms: key ring '${keyring}' must be 1-63 characters of [a-zA-Z0-9_-]`);
  let timeoutMs = 10_000;
  if (params['timeout-ms'] !== undefined) {
    timeoutMs = Number(params['timeout-ms']);
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 600_000) {
      throw err('USAGE', 'gcpkms: timeout-ms must be an integer between 1 and 600000');
    }
  }
  const pl = (params['protection-level'] ?? 'software').toUpperCase();
  if (pl !== 'SOFTWARE' && pl !== 'HSM')
    throw err('USAGE', `gcpkms: protection-level must be software or hsm, not '${params['protection-level']}'`);
  return {
    project,
    location,
    keyring,
    ring: `projects/${project}/locations/${location}/keyRings/${keyring}`,
    ...(params['endpoint'] ? { endpoint: parseGcpEndpoint(params['endpoint']) } : {}),
    ...(params['credentials'] ? { credentials: params['credentials'] } : {}),
    protection: pl,
    timeoutMs,
  };
}

export interface KeyRef {
  /** projects/…/cryptoKeys/NAME */
  key: string;
  /** projects/…/cryptoKeyVersions/N when one was named */
  version?: string;
  /** the CryptoKey id (NAME) */
  id: string;
}

/**
 * A key reference: a CryptoKey id in the configured ring (`NAME`), `NAME/cryptoKeyVersions/N`, or a
 * full resource name (any ring). `ring` is projects/P/locations/L/keyRings/K.
 */
export function parseKeyRef(ref: string, ring: string): KeyRef {
  const r = ref.trim();
  const full = FULL_RE.exec(r);
  if (full) {
    const [, , , , id, ver] = full;
    if (!ID_RE.test(id!)) throw err('INVALID_NAME', `gcpkms: '${id}' is not a CryptoKey id (1-63 characters of [a-zA-Z0-9_-])`);
    if (ver !== undefined && !/^\d+$/.test(ver)) throw err('INVALID_NAME', `gcpkms: '${ver}' is not a CryptoKey version number`);
    const key = r.replace(/\/cryptoKeyVersions\/[^/]+$/, '');
    return { key, id: id!, ...(ver !== undefined ? { version: r } : {}) };
  }
  const short = /^([^/]+)(?:\/cryptoKeyVersions\/(\d+))?$/.exec(r);
  if (short && ID_RE.test(short[1]!)) {
    const key = `${ring}/cryptoKeys/${short[1]}`;
    return { key, id: short[1]!, ...(short[2] !== undefined ? { version: `${key}/cryptoKeyVersions/${short[2]}` } : {}) };
  }
  if (r.startsWith('projects/')) {
    throw err('INVALID_NAME', `gcpkms: '${r}' is not projects/P/locations/L/keyRings/K/cryptoKeys/NAME[/cryptoKeyVersions/N]`);
  }
  throw err('INVALID_NAME', `gcpkms: '${r}' is not a CryptoKey id (1-63 characters of [a-zA-Z0-9_-]) or a full resource name`);
}
