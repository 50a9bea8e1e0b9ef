/**
 * Just enough X.509 to issue self-signed certificates (node:crypto parses certificates but cannot make
 * them): the dev server's TLS certificate, and the client certificate a KES API key stands for.
 */
import { createHash, randomBytes, sign, type KeyObject, createPublicKey } from 'node:crypto';

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const b: number[] = [];
  while (n > 0) {
    b.unshift(n & 0xff);
    n >>= 8;
  }
  return Buffer.from([0x80 | b.length, ...b]);
}
const tlv = (tag: number, body: Buffer) => Buffer.concat([Buffer.from([tag]), len(body.length), body]);
const seq = (...p: Buffer[]) => tlv(0x30, Buffer.concat(p));
const set = (...p: Buffer[]) => tlv(0x31, Buffer.concat(p));
function oid(s: string): Buffer {
  const parts = s.split('.').map(Number);
  const out = [40 * parts[0]! + parts[1]!];
  for (const p of parts.slice(2)) {
    const enc: number[] = [p & 0x7f];
    for (let v = p >> 7; v > 0; v >>= 7) enc.unshift((v & 0x7f) | 0x80);
    out.push(...enc);
  }
  return tlv(0x06, Buffer.from(out));
}
/** a DER INTEGER from unsigned big-endian bytes: minimal (no leading zero bytes), positive */
function int(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  let v = b.subarray(i);
  if (v[0]! & 0x80) v = Buffer.concat([Buffer.from([0]), v]);
  return tlv(0x02, v);
}
const utf8 = (s: string) => tlv(0x0c, Buffer.from(s, 'utf8'));
const bitString = (b: Buffer) => tlv(0x03, Buffer.concat([Buffer.from([0]), b]));
const octets = (b: Buffer) => tlv(0x04, b);
const explicit = (n: number, b: Buffer) => tlv(0xa0 + n, b);
function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2))) : tlv(0x18, Buffer.from(iso));
}
function ipBytes(ip: string): Buffer {
  if (ip.includes(':')) {
    const [head, tail] = ip.split('::') as [string, string | undefined];
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
    return Buffer.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
  }
  return Buffer.from(ip.split('.').map(Number));
}

export interface CertOptions {
  commonName: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  days?: number;
  /** serverAuth, clientAuth or both */
  usage?: ('server' | 'client')[];
}

/** A self-signed certificate for an Ed25519 or ECDSA P-256 key: DER. */
export function selfSignedCertificate(privateKey: KeyObject, o: CertOptions): Buffer {
  const pub = createPublicKey(privateKey);
  const spki = pub.export({ type: 'spki', format: 'der' }) as Buffer;
  const ed = privateKey.asymmetricKeyType === 'ed25519';
  const algId = ed ? seq(oid('1.3.101.112')) : seq(oid('1.2.840.10045.4.3.2'));
  const name = seq(set(seq(oid('2.5.4.3'), utf8(o.commonName))));
  const now = new Date(Date.now() - 60_000);
  const until = new Date(now.getTime() + (o.days ?? 365) * 86_400_000);
  // RFC 5280: a positive serial of at most 20 bytes; 0x40 keeps it 16 bytes long and non-zero
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x3f) | 0x40;
  const exts: Buffer[] = [];
  const san = [...(o.dnsNames ?? []).map((d) => tlv(0x82, Buffer.from(d))), ...(o.ipAddresses ?? []).map((ip) => tlv(0x87, ipBytes(ip)))];
  if (san.length) exts.push(seq(oid('2.5.29.17'), octets(seq(...san))));
  const usage = o.usage ?? ['server', 'client'];
  exts.push(seq(oid('2.5.29.37'), octets(seq(...usage.map((u) => oid(u === 'server' ? '1.3.6.1.5.5.7.3.1' : '1.3.6.1.5.5.7.3.2'))))));
  // keyUsage: digitalSignature (bit 0) — critical
  exts.push(seq(oid('2.5.29.15'), tlv(0x01, Buffer.from([0xff])), octets(tlv(0x03, Buffer.from([0x07, 0x80])))));
  exts.push(seq(oid('2.5.29.14'), octets(octets(createHash('sha1').update(spki).digest()))));
  const tbs = seq(
    explicit(0, int(Buffer.from([2]))),
    int(serial),
    algId,
    name,
    seq(time(now), time(until)),
    name,
    spki,
    explicit(3, seq(...exts)),
  );
  const sig = ed ? sign(null, tbs, privateKey) : sign('sha256', tbs, privateKey);
  return seq(tbs, algId, bitString(sig));
}

export function certToPem(der: Buffer): string {
  return `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`;
}
