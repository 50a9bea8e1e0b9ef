/** ECDSA signature encodings: ASN.1 DER SEQUENCE{r, s} ⇄ raw r‖s (IEEE P1363). */
import { err } from '../errors.js';

function intBytes(b: Buffer, size: number): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const v = b.subarray(i);
  if (v.length > size) throw err('INVALID_INPUT', 'ECDSA signature integer too large');
  return Buffer.concat([Buffer.alloc(size - v.length), v]);
}

export function derToRaw(der: Buffer, size: number): Buffer {
  const bad = () => err('INVALID_INPUT', 'not a DER ECDSA signature');
  let o = 0;
  if (der[o++] !== 0x30) throw bad();
  let len = der[o++]!;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n !== 1) throw bad();
    len = der[o++]!;
  }
  if (o + len !== der.length) throw bad();
  const parts: Buffer[] = [];
  for (let k = 0; k < 2; k++) {
    if (der[o++] !== 0x02) throw bad();
    const l = der[o++]!;
    if (l === undefined || o + l > der.length) throw bad();
    parts.push(intBytes(der.subarray(o, o + l), size));
    o += l;
  }
  return Buffer.concat(parts);
}

function derInt(v: Buffer): Buffer {
  let i = 0;
  while (i < v.length - 1 && v[i] === 0) i++;
  let b = v.subarray(i);
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return Buffer.concat([Buffer.from([0x02, b.length]), b]);
}

export function rawToDer(raw: Buffer): Buffer {
  if (raw.length % 2 !== 0 || raw.length === 0) throw err('INVALID_INPUT', 'raw ECDSA signature has odd length');
  const h = raw.length / 2;
  const body = Buffer.concat([derInt(raw.subarray(0, h)), derInt(raw.subarray(h))]);
  const len = body.length < 128 ? Buffer.from([body.length]) : Buffer.from([0x81, body.length]);
  return Buffer.concat([Buffer.from([0x30]), len, body]);
}

export const ecdsaSize = (type: string) => (type === 'ec-p384' ? 48 : 32);

/** the group order n of each ECDSA curve keyport signs with */
const ORDER: Record<string, bigint> = {
  'ec-p256': 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
  'ec-p384': 0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973n,
  secp256k1: 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n,
};

const toBig = (b: Buffer) => BigInt(`0x${b.toString('hex') || '0'}`);
const toBytes = (v: bigint, size: number) => Buffer.from(v.toString(16).padStart(size * 2, '0'), 'hex');

/** r and s of an ECDSA signature in either encoding; undefined when it does not parse */
function splitRS(type: string, sig: Buffer, format: 'der' | 'raw'): { r: Buffer; s: bigint } | undefined {
  const size = ecdsaSize(type);
  let raw: Buffer;
  try {
    raw = format === 'der' ? derToRaw(sig, size) : sig;
  } catch {
    return undefined;
  }
  if (raw.length !== 2 * size) return undefined;
  return { r: raw.subarray(0, size), s: toBig(raw.subarray(size)) };
}

/** s > n/2: the signature's malleable twin (r, n − s) is the low one */
export function isHighS(type: string, sig: Buffer, format: 'der' | 'raw'): boolean {
  const n = ORDER[type];
  const p = n === undefined ? undefined : splitRS(type, sig, format);
  return !!p && p.s > n! >> 1n;
}

/**
 * The low-S form of an ECDSA signature (BIP 62 / bitcoin's rule, applied to every curve): an s above
 * n/2 becomes n − s, so each signature has one accepted form and cannot be altered into a second valid
 * one. A low-S signature (and any non-ECDSA type) comes back unchanged; a replaced one in the same encoding.
 */
export function lowS(type: string, sig: Buffer, format: 'der' | 'raw'): Buffer {
  const n = ORDER[type];
  const p = n === undefined ? undefined : splitRS(type, sig, format);
  if (!p || p.s <= n! >> 1n) return sig;
  const raw = Buffer.concat([p.r, toBytes(n! - p.s, ecdsaSize(type))]);
  return format === 'der' ? rawToDer(raw) : raw;
}
