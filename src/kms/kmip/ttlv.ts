/**
 * KMIP TTLV (Tag-Type-Length-Value) encoding, KMIP 1.x section 9.1.
 *
 * Every item is a 3-byte tag, a 1-byte type, a 4-byte big-endian length and the value, padded with
 * zeros to a multiple of 8 bytes (the length counts the value without padding). Integer, Enumeration
 * and Interval are 4 bytes (+4 padding); Long Integer, Boolean and Date-Time are 8; Big Integer is a
 * two's-complement big-endian number whose length is a multiple of 8; Text (UTF-8) and Byte Strings
 * are padded; a Structure's value is the concatenation of its encoded children.
 *
 * The decoder is strict and bounded: every length is checked against the bytes that are really there
 * before anything is allocated or read, fixed-size types must carry their exact length, padding must be
 * zero, Booleans are 0 or 1, text must be valid UTF-8, children must fill their structure exactly, and
 * nesting is limited. Anything else is an INVALID_INPUT KeyportError, never a RangeError or a crash.
 */
import { err, KeyportError } from '../../errors.js';
import { ItemType, ITEM_TYPE_NAME, type ItemTypeName } from './tags.js';

export type TtlvItem =
  | { tag: number; type: 'Structure'; value: TtlvItem[] }
  | { tag: number; type: 'Integer'; value: number }
  | { tag: number; type: 'LongInteger'; value: bigint }
  | { tag: number; type: 'BigInteger'; value: bigint }
  | { tag: number; type: 'Enumeration'; value: number }
  | { tag: number; type: 'Boolean'; value: boolean }
  | { tag: number; type: 'TextString'; value: string }
  | { tag: number; type: 'ByteString'; value: Buffer }
  /** seconds since the Unix epoch (a signed 64-bit number) */
  | { tag: number; type: 'DateTime'; value: bigint }
  /** seconds (an unsigned 32-bit number) */
  | { tag: number; type: 'Interval'; value: number };

export type TtlvOf<T extends ItemTypeName> = Extract<TtlvItem, { type: T }>;

/** nesting deeper than this is refused (KMIP messages nest about 8 levels deep) */
export const MAX_DEPTH = 32;

const pad8 = (n: number) => (n + 7) & ~7;
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

// ---------------------------------------------------------------- builders

export const structure = (tag: number, value: (TtlvItem | undefined | null | false)[]): TtlvItem => ({
  tag,
  type: 'Structure',
  value: value.filter((v): v is TtlvItem => !!v),
});
export const integer = (tag: number, value: number): TtlvItem => ({ tag, type: 'Integer', value });
export const longInteger = (tag: number, value: bigint): TtlvItem => ({ tag, type: 'LongInteger', value });
export const bigInteger = (tag: number, value: bigint): TtlvItem => ({ tag, type: 'BigInteger', value });
export const enumeration = (tag: number, value: number): TtlvItem => ({ tag, type: 'Enumeration', value });
export const boolean = (tag: number, value: boolean): TtlvItem => ({ tag, type: 'Boolean', value });
export const textString = (tag: number, value: string): TtlvItem => ({ tag, type: 'TextString', value });
export const byteString = (tag: number, value: Buffer): TtlvItem => ({ tag, type: 'ByteString', value });
export const dateTime = (tag: number, value: bigint | Date): TtlvItem => ({
  tag,
  type: 'DateTime',
  value: value instanceof Date ? BigInt(Math.floor(value.getTime() / 1000)) : value,
});
export const interval = (tag: number, value: number): TtlvItem => ({ tag, type: 'Interval', value });

// ---------------------------------------------------------------- encoder

function checkTag(tag: number): void {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xffffff) throw err('INVALID_INPUT', `KMIP tag ${tag} is not a 3-byte tag`);
}

/** the two's-complement big-endian bytes of v, sign-extended to a multiple of 8 bytes */
function bigIntBytes(v: bigint): Buffer {
  const neg = v < 0n;
  let hex = (neg ? -v - 1n : v).toString(16); // for negatives: encode ~v then invert
  if (hex.length % 2) hex = '0' + hex;
  let b = Buffer.from(hex, 'hex');
  // room for the sign bit
  if (b.length === 0 || (b[0]! & 0x80) !== 0) b = Buffer.concat([Buffer.alloc(1), b]);
  const out = Buffer.alloc(pad8(b.length));
  b.copy(out, out.length - b.length);
  if (neg) for (let i = 0; i < out.length; i++) out[i] = ~out[i]! & 0xff;
  return out;
}

function encodedSize(item: TtlvItem, depth: number): number {
  if (depth > MAX_DEPTH) throw err('INVALID_INPUT', `KMIP structure nests deeper than ${MAX_DEPTH} levels`);
  switch (item.type) {
    case 'Structure':
      return 8 + item.value.reduce((n, c) => n + encodedSize(c, depth + 1), 0);
    case 'Integer':
    case 'Enumeration':
    case 'Interval':
    case 'LongInteger':
    case 'Boolean':
    case 'DateTime':
      return 16;
    case 'BigInteger':
      return 8 + bigIntBytes(item.value).length;
    case 'TextString':
      return 8 + pad8(Buffer.byteLength(item.value, 'utf8'));
    case 'ByteString':
      return 8 + pad8(item.value.length);
    default:
      throw err('INVALID_INPUT', `KMIP item type ${(item as { type: string }).type} is unknown`);
  }
}

function writeItem(item: TtlvItem, buf: Buffer, off: number): number {
  checkTag(item.tag);
  buf.writeUIntBE(item.tag, off, 3);
  buf[off + 3] = ItemType[item.type];
  const v = off + 8;
  let len: number;
  switch (item.type) {
    case 'Structure': {
      let p = v;
      for (const c of item.value) p = writeItem(c, buf, p);
      len = p - v;
      break;
    }
    case 'Integer':
      if (!Number.isInteger(item.value) || item.value < -0x80000000 || item.value > 0x7fffffff) {
        throw err('INVALID_INPUT', `KMIP Integer ${item.value} does not fit in 32 bits`);
      }
      buf.writeInt32BE(item.value, v);
      len = 4;
      break;
    case 'Enumeration':
    case 'Interval':
      if (!Number.isInteger(item.value) || item.value < 0 || item.value > 0xffffffff) {
        throw err('INVALID_INPUT', `KMIP ${item.type} ${item.value} does not fit in 32 unsigned bits`);
      }
      buf.writeUInt32BE(item.value, v);
      len = 4;
      break;
    case 'LongInteger':
    case 'DateTime':
      if (item.value < INT64_MIN || item.value > INT64_MAX) throw err('INVALID_INPUT', `KMIP ${item.type} does not fit in 64 bits`);
      buf.writeBigInt64BE(item.value, v);
      len = 8;
      break;
    case 'Boolean':
      buf.writeBigUInt64BE(item.value ? 1n : 0n, v);
      len = 8;
      break;
    case 'BigInteger': {
      const b = bigIntBytes(item.value);
      b.copy(buf, v);
      len = b.length;
      break;
    }
    case 'TextString':
      len = buf.write(item.value, v, 'utf8');
      break;
    case 'ByteString':
      item.value.copy(buf, v);
      len = item.value.length;
      break;
  }
  buf.writeUInt32BE(len, off + 4);
  return v + pad8(len); // padding is already zero (Buffer.alloc)
}

/** Encode one item (usually a Request Message structure). */
export function encodeTtlv(item: TtlvItem): Buffer {
  const buf = Buffer.alloc(encodedSize(item, 0));
  const end = writeItem(item, buf, 0);
  if (end !== buf.length) throw err('INTERNAL', 'KMIP encoder size mismatch');
  return buf;
}

// ---------------------------------------------------------------- decoder

const bad = (what: string, off: number) => err('INVALID_INPUT', `malformed KMIP message: ${what} at byte ${off}`);
const utf8 = new TextDecoder('utf-8', { fatal: true });

function isZero(buf: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (buf[i] !== 0) return false;
  return true;
}

function readItem(buf: Buffer, off: number, end: number, depth: number): { item: TtlvItem; next: number } {
  if (depth > MAX_DEPTH) throw bad(`structures nested deeper than ${MAX_DEPTH} levels`, off);
  if (end - off < 8) throw bad('truncated item header', off);
  const tag = buf.readUIntBE(off, 3);
  // standard tags are 42xxxx, vendor extensions 54xxxx (KMIP 9.1.3.1)
  if (tag >>> 16 !== 0x42 && tag >>> 16 !== 0x54) throw bad(`tag 0x${tag.toString(16).padStart(6, '0')} is not a KMIP tag`, off);
  const typeByte = buf[off + 3]!;
  const type = ITEM_TYPE_NAME[typeByte];
  if (!type) throw bad(`unknown item type 0x${typeByte.toString(16).padStart(2, '0')}`, off + 3);
  const len = buf.readUInt32BE(off + 4);
  const v = off + 8;
  const padded = pad8(len);
  // compare before allocating or slicing anything: the length is attacker-controlled
  if (len > end - v || padded > end - v) throw bad(`length ${len} runs past the end of its container`, off + 4);
  const next = v + padded;
  const fixed = (n: number) => {
    if (len !== n) throw bad(`${type} with length ${len} (must be ${n})`, off + 4);
  };
  const zeroPad = () => {
    if (!isZero(buf, v + len, next)) throw bad('non-zero padding', v + len);
  };
  switch (type) {
    case 'Structure': {
      if (len !== padded) throw bad(`Structure length ${len} is not a multiple of 8`, off + 4);
      const value: TtlvItem[] = [];
      let p = v;
      while (p < next) {
        const r = readItem(buf, p, next, depth + 1);
        value.push(r.item);
        p = r.next;
      }
      return { item: { tag, type, value }, next };
    }
    case 'Integer':
      fixed(4);
      zeroPad();
      return { item: { tag, type, value: buf.readInt32BE(v) }, next };
    case 'Enumeration':
    case 'Interval':
      fixed(4);
      zeroPad();
      return { item: { tag, type, value: buf.readUInt32BE(v) }, next };
    case 'LongInteger':
    case 'DateTime':
      fixed(8);
      return { item: { tag, type, value: buf.readBigInt64BE(v) }, next };
    case 'Boolean': {
      fixed(8);
      const b = buf.readBigUInt64BE(v);
      if (b > 1n) throw bad('Boolean that is neither 0 nor 1', v);
      return { item: { tag, type, value: b === 1n }, next };
    }
    case 'BigInteger': {
      if (len === 0 || len % 8 !== 0) throw bad(`Big Integer with length ${len} (must be a non-zero multiple of 8)`, off + 4);
      const bytes = buf.subarray(v, v + len);
      let value = BigInt('0x' + bytes.toString('hex'));
      if (bytes[0]! & 0x80) value -= 1n << BigInt(len * 8);
      return { item: { tag, type, value }, next };
    }
    case 'TextString': {
      zeroPad();
      let value: string;
      try {
        value = utf8.decode(buf.subarray(v, v + len));
      } catch {
        throw bad('Text String that is not valid UTF-8', v);
      }
      return { item: { tag, type, value }, next };
    }
    case 'ByteString':
      zeroPad();
      return { item: { tag, type, value: Buffer.from(buf.subarray(v, v + len)) }, next };
  }
}

/** Decode exactly one item that fills `buf` (trailing bytes are an error). */
export function decodeTtlv(buf: Buffer): TtlvItem {
  try {
    const { item, next } = readItem(buf, 0, buf.length, 0);
    if (next !== buf.length) throw bad(`${buf.length - next} trailing bytes`, next);
    return item;
  } catch (e) {
    if (e instanceof KeyportError) throw e;
    // defence in depth: nothing from a Buffer read may escape as a bare RangeError
    throw err('INVALID_INPUT', `malformed KMIP message: ${(e as Error).message.split('\n')[0]}`);
  }
}

/**
 * The total size (header + padded value) of the item whose 8-byte header starts `head`, for framing a
 * stream; undefined until 8 bytes are there.
 */
export function ttlvFrameLength(head: Buffer): number | undefined {
  if (head.length < 8) return undefined;
  return 8 + pad8(head.readUInt32BE(4));
}

// ---------------------------------------------------------------- readers

const tagHex = (tag: number) => '0x' + tag.toString(16).padStart(6, '0');

/** children of a structure with the given tag */
export function findAll(s: TtlvItem | undefined, tag: number): TtlvItem[] {
  if (s?.type !== 'Structure') return [];
  return s.value.filter((c) => c.tag === tag);
}

/** the first child with `tag`, checked to be of `type`; undefined when absent */
export function find<T extends ItemTypeName>(s: TtlvItem | undefined, tag: number, type: T): TtlvOf<T> | undefined {
  if (s?.type !== 'Structure') return undefined;
  const c = s.value.find((x) => x.tag === tag);
  if (!c) return undefined;
  if (c.type !== type) throw err('INVALID_INPUT', `malformed KMIP message: ${tagHex(tag)} is a ${c.type}, expected ${type}`);
  return c as TtlvOf<T>;
}

/** like find, but a missing item is an INVALID_INPUT error */
export function need<T extends ItemTypeName>(s: TtlvItem | undefined, tag: number, type: T, what?: string): TtlvOf<T> {
  const c = find(s, tag, type);
  if (!c) throw err('INVALID_INPUT', `malformed KMIP message: ${what ?? tagHex(tag)} is missing`);
  return c;
}
