/**
 * MinIO KES's stored key format, as KES v0.24.0 reads and writes it (internal/crypto/key.go):
 *
 * - Current form: standard base64 (padded, no newline) of a protobuf `miniohq.kms.KeyVersion`:
 *     KeyVersion { SecretKey Key = 1; HMACKey HMACKey = 2; google.protobuf.Timestamp CreatedAt = 3; string CreatedBy = 4; }
 *     SecretKey  { bytes Key = 1; uint32 Type = 2; }   // 32 bytes; Type 1 = AES256, 2 = ChaCha20
 *     HMACKey    { bytes Key = 1; uint32 Hash = 2; }   // 32 bytes; Hash 1 = SHA256
 *   A file KES v0.24 writes: `0a 24 {0a 20 <key> 10 01} 12 24 {0a 20 <hmac key> 10 01} 1a .. {08 <secs> 10 <nanos>} 22 40 <identity>`.
 *   KES v0.24 cannot read a protobuf key without the HMACKey message, so we always write one.
 * - Legacy form (older KES): JSON `{"bytes": b64(32), "algorithm": "AES256"|"ChaCha20"|"", "created_at": RFC 3339,
 *   "created_by": identity}`; KES tells the forms apart by "is the whole file valid JSON". No HMAC key.
 *
 * The protobuf wire format is small enough to write by hand, which keeps the bytes exactly what Go's
 * proto.Marshal produces (fields in number order, proto3 zero values omitted).
 */
import { randomBytes } from 'node:crypto';
import { err } from '../errors.js';

export type KesKeyAlgorithm = 'AES256' | 'ChaCha20';
export type KesKeyForm = 'protobuf' | 'json';

export interface KesKey {
  /** the 32-byte encryption key */
  secret: Buffer;
  algorithm: KesKeyAlgorithm;
  /** the 32-byte HMAC-SHA256 key of KES v0.24 keys (absent in legacy JSON keys) */
  hmacKey?: Buffer;
  /** RFC 3339, UTC, fractional seconds as stored (Go's RFC3339Nano) */
  createdAt: string;
  /** the KES identity that created the key ('' when unknown) */
  createdBy: string;
}

export interface DecodedKesKey extends KesKey {
  /** the form the bytes were in */
  form: KesKeyForm;
}

const bad = (why: string) => err('INVALID_INPUT', `not a KES key: ${why}`);

const ALGORITHM_NAMES: Record<string, KesKeyAlgorithm> = {
  AES256: 'AES256',
  'AES256-GCM_SHA256': 'AES256',
  ChaCha20: 'ChaCha20',
  'XCHACHA20-POLY1305': 'ChaCha20',
};
const TYPE_OF: Record<KesKeyAlgorithm, number> = { AES256: 1, ChaCha20: 2 };

// ---------- time: RFC 3339 <-> (seconds, nanos), exact to the nanosecond ----------

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$/;

export function parseRfc3339(s: string): { seconds: bigint; nanos: number } {
  const m = RFC3339.exec(s);
  if (!m) throw bad(`created_at '${s.slice(0, 40)}' is not an RFC 3339 time`);
  const [, y, mo, d, h, mi, se, frac, zone] = m;
  const dt = new Date(0); // setUTCFullYear, unlike Date.UTC, keeps years 0-99 as they are
  dt.setUTCFullYear(Number(y), Number(mo) - 1, Number(d));
  dt.setUTCHours(Number(h), Number(mi), Number(se), 0);
  if (dt.getUTCMonth() !== Number(mo) - 1 || dt.getUTCDate() !== Number(d) || Number(h) > 23 || Number(mi) > 59 || Number(se) > 59)
    throw bad(`created_at '${s.slice(0, 40)}' is not a valid date`);
  let seconds = BigInt(Math.floor(dt.getTime() / 1000));
  if (zone !== 'Z' && zone !== 'z') {
    const sign = zone!.startsWith('-') ? -1n : 1n;
    seconds -= sign * BigInt(Number(zone!.slice(1, 3)) * 3600 + Number(zone!.slice(4, 6)) * 60);
  }
  const nanos = frac ? Number(frac.padEnd(9, '0')) : 0;
  return { seconds, nanos };
}

export function formatRfc3339(seconds: bigint, nanos: number): string {
  const ms = Number(seconds) * 1000;
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) throw bad('created_at is out of range');
  const base = new Date(ms).toISOString().replace(/\.\d{3}Z$/, '');
  const frac = nanos ? '.' + String(nanos).padStart(9, '0').replace(/0+$/, '') : '';
  return `${base}${frac}Z`;
}

// ---------- protobuf wire format ----------

function varint(v: bigint): Buffer {
  let x = BigInt.asUintN(64, v);
  const out: number[] = [];
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x) b |= 0x80;
    out.push(b);
  } while (x);
  return Buffer.from(out);
}

const tag = (field: number, wire: number) => varint(BigInt((field << 3) | wire));
const lenField = (field: number, b: Buffer) => Buffer.concat([tag(field, 2), varint(BigInt(b.length)), b]);
const varField = (field: number, v: bigint) => (v === 0n ? Buffer.alloc(0) : Buffer.concat([tag(field, 0), varint(v)]));

interface Field {
  wire: number;
  v?: bigint;
  b?: Buffer;
}

/** parse one message into field number -> occurrences (in order) */
function parseMessage(b: Buffer, what: string): Map<number, Field[]> {
  const out = new Map<number, Field[]>();
  let i = 0;
  const readVarint = (): bigint => {
    let x = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (i >= b.length) throw bad(`${what}: truncated varint`);
      const c = b[i++]!;
      x |= BigInt(c & 0x7f) << shift;
      if (!(c & 0x80)) return BigInt.asUintN(64, x);
    }
    throw bad(`${what}: varint too long`);
  };
  while (i < b.length) {
    const t = readVarint();
    const field = Number(t >> 3n);
    const wire = Number(t & 7n);
    if (field < 1 || field > 536870911) throw bad(`${what}: bad field number`);
    let f: Field;
    if (wire === 0) f = { wire, v: readVarint() };
    else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      if (i + n > b.length) throw bad(`${what}: truncated field`);
      f = { wire, b: b.subarray(i, i + n) };
      i += n;
    } else if (wire === 2) {
      const n = readVarint();
      if (n > BigInt(b.length - i)) throw bad(`${what}: truncated field`);
      f = { wire, b: b.subarray(i, i + Number(n)) };
      i += Number(n);
    } else throw bad(`${what}: unsupported wire type ${wire}`);
    const list = out.get(field) ?? [];
    list.push(f);
    out.set(field, list);
  }
  return out;
}

function lastOf(m: Map<number, Field[]>, field: number, wire: number, what: string): Field | undefined {
  const l = m.get(field);
  if (!l) return undefined;
  const f = l[l.length - 1]!;
  if (l.some((x) => x.wire !== wire)) throw bad(`${what}: field ${field} has the wrong wire type`);
  return f;
}

/** an embedded message: several occurrences merge, as protobuf parsers do, i.e. concatenate */
function sub(m: Map<number, Field[]>, field: number, what: string): Map<number, Field[]> | undefined {
  const l = m.get(field);
  if (!l) return undefined;
  if (l.some((x) => x.wire !== 2)) throw bad(`${what}: field ${field} has the wrong wire type`);
  return parseMessage(Buffer.concat(l.map((x) => x.b!)), what);
}

function decodeProtobuf(raw: Buffer): KesKey {
  const kv = parseMessage(raw, 'KeyVersion');
  const sk = sub(kv, 1, 'KeyVersion.Key');
  if (!sk) throw bad('the secret key is missing');
  const secret = lastOf(sk, 1, 2, 'SecretKey')?.b ?? Buffer.alloc(0);
  if (secret.length !== 32) throw bad(`the secret key is ${secret.length} bytes, not 32`);
  const type = Number(BigInt.asUintN(32, lastOf(sk, 2, 0, 'SecretKey')?.v ?? 0n));
  const algorithm: KesKeyAlgorithm | undefined = type === 1 ? 'AES256' : type === 2 ? 'ChaCha20' : undefined;
  if (!algorithm) throw bad(`unknown secret key type ${type}`);
  let hmacKey: Buffer | undefined;
  const hk = sub(kv, 2, 'KeyVersion.HMACKey');
  if (hk) {
    hmacKey = lastOf(hk, 1, 2, 'HMACKey')?.b ?? Buffer.alloc(0);
    if (hmacKey.length !== 32) throw bad(`the HMAC key is ${hmacKey.length} bytes, not 32`);
    const hash = Number(BigInt.asUintN(32, lastOf(hk, 2, 0, 'HMACKey')?.v ?? 0n));
    if (hash !== 1) throw bad(`unknown HMAC hash ${hash}`);
  }
  const ts = sub(kv, 3, 'KeyVersion.CreatedAt');
  // a missing timestamp reads as the Unix epoch (Go's Timestamp.AsTime of nil)
  const seconds = BigInt.asIntN(64, (ts && lastOf(ts, 1, 0, 'Timestamp')?.v) ?? 0n);
  const nanos = Number(BigInt.asIntN(32, (ts && lastOf(ts, 2, 0, 'Timestamp')?.v) ?? 0n));
  if (nanos < 0 || nanos > 999_999_999) throw bad('created_at has invalid nanoseconds');
  const by = lastOf(kv, 4, 2, 'KeyVersion')?.b ?? Buffer.alloc(0);
  let createdBy: string;
  try {
    createdBy = new TextDecoder('utf-8', { fatal: true }).decode(by); // proto3 strings are UTF-8 (Go refuses others)
  } catch {
    throw bad('created_by is not valid UTF-8');
  }
  return {
    secret: Buffer.from(secret),
    algorithm,
    ...(hmacKey ? { hmacKey: Buffer.from(hmacKey) } : {}),
    createdAt: formatRfc3339(seconds, nanos),
    createdBy,
  };
}

function encodeProtobuf(k: KesKey): Buffer {
  const hmacKey = k.hmacKey ?? randomBytes(32); // KES v0.24 needs one; KES's own import makes a random one too
  const { seconds, nanos } = parseRfc3339(k.createdAt);
  const secretKey = Buffer.concat([lenField(1, k.secret), varField(2, BigInt(TYPE_OF[k.algorithm]))]);
  const hmac = Buffer.concat([lenField(1, hmacKey), varField(2, 1n)]);
  const time = Buffer.concat([varField(1, seconds), varField(2, BigInt(nanos))]);
  const by = Buffer.from(k.createdBy, 'utf8');
  const msg = Buffer.concat([lenField(1, secretKey), lenField(2, hmac), lenField(3, time), by.length ? lenField(4, by) : Buffer.alloc(0)]);
  return Buffer.from(msg.toString('base64'), 'ascii');
}

// ---------- legacy JSON ----------

/** Go's base64.StdEncoding: padded, '\r' and '\n' ignored */
function goBase64(s: string, what: string): Buffer {
  const t = s.replace(/[\r\n]/g, '');
  if (t.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(t)) throw bad(`${what} is not valid base64`);
  return Buffer.from(t, 'base64');
}

/** encoding/json matches field names exactly, else case-insensitively; the last duplicate wins */
function jsonField(o: Record<string, unknown>, name: string): unknown {
  if (Object.hasOwn(o, name)) return o[name];
  let v: unknown;
  for (const [k, x] of Object.entries(o)) if (k.toLowerCase() === name) v = x;
  return v;
}

function decodeJson(o: unknown): KesKey {
  if (o === null) throw bad('the secret key is 0 bytes, not 32');
  if (typeof o !== 'object' || Array.isArray(o)) throw bad('the JSON form must be an object');
  const r = o as Record<string, unknown>;
  const bytes = jsonField(r, 'bytes');
  if (bytes !== undefined && bytes !== null && typeof bytes !== 'string') throw bad("'bytes' must be a base64 string");
  const secret = typeof bytes === 'string' ? goBase64(bytes, "'bytes'") : Buffer.alloc(0);
  if (secret.length !== 32) throw bad(`the secret key is ${secret.length} bytes, not 32`);
  const alg = jsonField(r, 'algorithm');
  if (alg !== undefined && alg !== null && typeof alg !== 'string') throw bad("'algorithm' must be a string");
  const algorithm = !alg ? 'AES256' : ALGORITHM_NAMES[alg];
  if (!algorithm) throw bad(`unsupported algorithm '${String(alg).slice(0, 40)}'`);
  const at = jsonField(r, 'created_at');
  let createdAt = '0001-01-01T00:00:00Z'; // Go's zero time when absent
  if (at !== undefined && at !== null) {
    if (typeof at !== 'string') throw bad("'created_at' must be an RFC 3339 string");
    const t = parseRfc3339(at);
    createdAt = formatRfc3339(t.seconds, t.nanos);
  }
  const by = jsonField(r, 'created_by');
  if (by !== undefined && by !== null && typeof by !== 'string') throw bad("'created_by' must be a string");
  return { secret, algorithm, createdAt, createdBy: by ?? '' };
}

function encodeJson(k: KesKey): Buffer {
  const { seconds, nanos } = parseRfc3339(k.createdAt);
  return Buffer.from(
    JSON.stringify({
      bytes: k.secret.toString('base64'),
      algorithm: k.algorithm,
      created_at: formatRfc3339(seconds, nanos),
      created_by: k.createdBy,
    }),
  );
}

// ---------- public API ----------

function tryJson(bytes: Buffer): { ok: true; value: unknown } | { ok: false } {
  const text = bytes.toString('utf8');
  if (!/^[\s]*[[{"0-9tfn-]/.test(text)) return { ok: false };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false };
  }
}

/** which form a stored key is in (KES's own rule: valid JSON, else base64 protobuf) */
export function kesKeyForm(bytes: Buffer): KesKeyForm {
  return tryJson(bytes).ok ? 'json' : 'protobuf';
}

/** Decode a stored KES key; malformed input -> INVALID_INPUT. */
export function decodeKesKey(bytes: Buffer): DecodedKesKey {
  const j = tryJson(bytes);
  if (j.ok) return { ...decodeJson(j.value), form: 'json' };
  const raw = goBase64(bytes.toString('latin1'), 'the stored key');
  if (raw.length === 0) throw bad('the file is empty');
  return { ...decodeProtobuf(raw), form: 'protobuf' };
}

/** Encode a key as KES stores it: base64 protobuf (KES v0.24) or the legacy JSON form. */
export function encodeKesKey(k: KesKey, form: KesKeyForm = 'protobuf'): Buffer {
  if (k.secret.length !== 32) throw err('INVALID_INPUT', `a KES key is 32 bytes, got ${k.secret.length}`);
  if (k.hmacKey && k.hmacKey.length !== 32) throw err('INVALID_INPUT', `a KES HMAC key is 32 bytes, got ${k.hmacKey.length}`);
  if (!(k.algorithm in TYPE_OF)) throw err('INVALID_INPUT', `unsupported KES key algorithm '${String(k.algorithm)}'`);
  return form === 'json' ? encodeJson(k) : encodeProtobuf(k);
}
