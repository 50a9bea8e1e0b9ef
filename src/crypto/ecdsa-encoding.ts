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
