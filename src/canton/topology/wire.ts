/**
 * The protobuf wire format, only as far as Canton's topology messages need it: varints, 64-bit ints,
 * length-delimited fields, packed repeated enums. The writer emits what protobuf-java emits for proto3
 * (fields in field-number order, scalar defaults omitted, repeated enums packed), so Canton's bytes are
 * reproduced exactly. The reader is strict: a truncated or malformed message is INVALID_INPUT, never a crash.
 */
import { err } from '../../errors.js';

export const WT_VARINT = 0;
export const WT_I64 = 1;
export const WT_LEN = 2;
export const WT_I32 = 5;

const bad = (what: string) => err('INVALID_INPUT', `not a valid Canton protobuf message: ${what}`);

export class Writer {
  private parts: Buffer[] = [];

  private raw(b: Buffer): void {
    this.parts.push(b);
  }

  private varintRaw(v: bigint | number): void {
    let n = BigInt(v);
    if (n < 0n) n = BigInt.asUintN(64, n); // negative int32/int64 take 10 bytes, as protobuf-java writes them
    const out: number[] = [];
    while (n >= 0x80n) {
      out.push(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    }
    out.push(Number(n));
    this.raw(Buffer.from(out));
  }

  private tag(field: number, wt: number): void {
    this.varintRaw((field << 3) | wt);
  }

  /** uint32/int32/int64/enum/bool; omitted when 0 (proto3 default) unless `always` */
  varint(field: number, v: number | bigint | boolean, always = false): this {
    const n = typeof v === 'boolean' ? (v ? 1 : 0) : v;
    if (!always && (n === 0 || n === 0n)) return this;
    this.tag(field, WT_VARINT);
    this.varintRaw(n);
    return this;
  }

  /** bytes field; omitted when empty unless `always` (oneof members and explicit-presence fields) */
  bytes(field: number, b: Buffer | Uint8Array, always = false): this {
    if (!always && b.length === 0) return this;
    this.tag(field, WT_LEN);
    this.varintRaw(b.length);
    this.raw(Buffer.from(b));
    return this;
  }

  string(field: number, s: string, always = false): this {
    return this.bytes(field, Buffer.from(s, 'utf8'), always);
  }

  /** an embedded message: always written when present (even empty) */
  message(field: number, m: Buffer | undefined): this {
    if (m === undefined) return this;
    return this.bytes(field, m, true);
  }

  /** packed repeated varints (proto3 default for repeated scalars/enums); omitted when empty */
  packed(field: number, vs: readonly number[]): this {
    if (vs.length === 0) return this;
    const w = new Writer();
    for (const v of vs) w.varintRaw(v);
    return this.bytes(field, w.finish(), true);
  }

  /** pre-encoded field bytes (unknown fields kept from a decode) */
  append(b: Buffer | undefined): this {
    if (b?.length) this.raw(b);
    return this;
  }

  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}

export interface Field {
  field: number;
  wt: number;
  /** varint value (wt 0) */
  int?: bigint;
  /** payload (wt 2), or the 4/8 raw bytes (wt 5/1) */
  data?: Buffer;
  /** the whole field as it was on the wire (tag included) */
  raw: Buffer;
}

export class Reader {
  private o = 0;
  constructor(private readonly b: Buffer) {}

  done(): boolean {
    return this.o >= this.b.length;
  }

  varint(): bigint {
    let shift = 0n;
    let v = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.o >= this.b.length) throw bad('truncated varint');
      const byte = this.b[this.o++]!;
      v |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return v;
      shift += 7n;
    }
    throw bad('varint longer than 10 bytes');
  }

  next(): Field {
    const start = this.o;
    const tag = this.varint();
    const field = Number(tag >> 3n);
    const wt = Number(tag & 7n);
    if (field === 0) throw bad('field number 0');
    switch (wt) {
      case WT_VARINT: {
        const int = this.varint();
        return { field, wt, int, raw: this.b.subarray(start, this.o) };
      }
      case WT_LEN: {
        const len = this.varint();
        if (len > BigInt(this.b.length - this.o)) throw bad('length beyond the end of the message');
        const data = this.b.subarray(this.o, this.o + Number(len));
        this.o += Number(len);
        return { field, wt, data, raw: this.b.subarray(start, this.o) };
      }
      case WT_I64:
      case WT_I32: {
        const n = wt === WT_I64 ? 8 : 4;
        if (this.o + n > this.b.length) throw bad('truncated fixed-size field');
        const data = this.b.subarray(this.o, this.o + n);
        this.o += n;
        return { field, wt, data, raw: this.b.subarray(start, this.o) };
      }
      default:
        throw bad(`unsupported wire type ${wt}`);
    }
  }

  fields(): Field[] {
    const out: Field[] = [];
    while (!this.done()) out.push(this.next());
    return out;
  }
}

/** the fields of a message, with typed accessors that reject a wrong wire type */
export class Fields {
  readonly list: Field[];
  private used = new Set<Field>();

  constructor(
    b: Buffer,
    private readonly what: string,
  ) {
    this.list = new Reader(b).fields();
  }

  private take(n: number, wt: number): Field[] {
    const fs = this.list.filter((f) => f.field === n);
    for (const f of fs) {
      if (f.wt !== wt) throw bad(`${this.what} field ${n} has wire type ${f.wt}, expected ${wt}`);
      this.used.add(f);
    }
    return fs;
  }

  has(n: number): boolean {
    return this.list.some((f) => f.field === n);
  }

  /** last value wins, as in protobuf */
  int(n: number): bigint {
    const fs = this.take(n, WT_VARINT);
    return fs.length ? fs[fs.length - 1]!.int! : 0n;
  }

  uint32(n: number): number {
    return Number(BigInt.asUintN(32, this.int(n)));
  }

  int32(n: number): number {
    return Number(BigInt.asIntN(32, this.int(n)));
  }

  int64(n: number): bigint {
    return BigInt.asIntN(64, this.int(n));
  }

  bool(n: number): boolean {
    return this.int(n) !== 0n;
  }

  bytes(n: number): Buffer {
    const fs = this.take(n, WT_LEN);
    return fs.length ? Buffer.from(fs[fs.length - 1]!.data!) : Buffer.alloc(0);
  }

  optBytes(n: number): Buffer | undefined {
    const fs = this.take(n, WT_LEN);
    return fs.length ? Buffer.from(fs[fs.length - 1]!.data!) : undefined;
  }

  string(n: number): string {
    const b = this.bytes(n);
    const s = b.toString('utf8');
    if (!Buffer.from(s, 'utf8').equals(b)) throw bad(`${this.what} field ${n} is not valid UTF-8`);
    return s;
  }

  repeatedBytes(n: number): Buffer[] {
    return this.take(n, WT_LEN).map((f) => Buffer.from(f.data!));
  }

  /** repeated enum/varint, packed or not (parsers must accept both) */
  repeatedInt(n: number): number[] {
    const out: number[] = [];
    for (const f of this.list.filter((x) => x.field === n)) {
      this.used.add(f);
      if (f.wt === WT_VARINT) out.push(Number(BigInt.asIntN(32, f.int!)));
      else if (f.wt === WT_LEN) {
        const r = new Reader(f.data!);
        while (!r.done()) out.push(Number(BigInt.asIntN(32, r.varint())));
      } else throw bad(`${this.what} field ${n} has wire type ${f.wt}`);
    }
    return out;
  }

  /** fields no accessor asked for, in wire order (kept so re-encoding loses nothing) */
  unknown(): Buffer | undefined {
    const rest = this.list.filter((f) => !this.used.has(f));
    return rest.length ? Buffer.concat(rest.map((f) => f.raw)) : undefined;
  }
}
