/**
 * The KMIP TTLV codec: the encoding examples of the KMIP 1.x specification (section 9.1.2, checked by
 * hand below), round trips of every type, and a strict decoder: truncated, garbled and hostile input is
 * an INVALID_INPUT KeyportError, never another exception, and never an allocation of a declared length.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { KeyportError } from '../../src/errors.js';
import {
  bigInteger,
  boolean,
  byteString,
  dateTime,
  decodeTtlv,
  encodeTtlv,
  enumeration,
  integer,
  interval,
  longInteger,
  structure,
  textString,
  ttlvFrameLength,
  MAX_DEPTH,
  type TtlvItem,
} from '../../src/kms/kmip/ttlv.js';
import { Tag, Operation } from '../../src/kms/kmip/tags.js';

const hex = (s: string) => Buffer.from(s.replace(/[\s|]/g, ''), 'hex');

function rejects(buf: Buffer, re?: RegExp) {
  assert.throws(
    () => decodeTtlv(buf),
    (e: unknown) => {
      assert.ok(e instanceof KeyportError, `expected a KeyportError, got ${String(e)}`);
      assert.equal(e.code, 'INVALID_INPUT');
      assert.ok(!e.message.includes('\n'));
      if (re) assert.match(e.message, re);
      return true;
    },
  );
}

describe('KMIP TTLV: the specification examples (KMIP 1.x 9.1.2)', () => {
  // tag 0x420020 is the spec's example tag (Compromise Date); each vector is header | value+padding
  const vectors: [string, TtlvItem, string][] = [
    ['Integer 8', integer(0x420020, 8), '420020 | 02 | 00000004 | 00000008 00000000'],
    // 123456789000000000 = 0x01B69B4BA5749200
    ['Long Integer 123456789000000000', longInteger(0x420020, 123456789000000000n), '420020 | 03 | 00000008 | 01B69B4BA5749200'],
    // 1234567890000000000000000000 = 0x03FD35EB6BC2DF4618080000 (12 bytes), sign-extended to 16
    [
      'Big Integer 1234567890000000000000000000',
      bigInteger(0x420020, 1234567890000000000000000000n),
      '420020 | 04 | 00000010 | 0000000003FD35EB 6BC2DF4618080000',
    ],
    ['Enumeration 255', enumeration(0x420020, 255), '420020 | 05 | 00000004 | 000000FF 00000000'],
    ['Boolean true', boolean(0x420020, true), '420020 | 06 | 00000008 | 0000000000000001'],
    ['Text String "Hello World"', textString(0x420020, 'Hello World'), '420020 | 07 | 0000000B | 48656C6C6F20576F 726C640000000000'],
    ['Byte String 01 02 03', byteString(0x420020, Buffer.from([1, 2, 3])), '420020 | 08 | 00000003 | 0102030000000000'],
    // Friday, March 14, 2008, 11:56:40 GMT = 1205495800 s = 0x47DA67F8
    ['Date-Time 2008-03-14T11:56:40Z', dateTime(0x420020, new Date('2008-03-14T11:56:40Z')), '420020 | 09 | 00000008 | 0000000047DA67F8'],
    // 10 days = 864000 s = 0x000D2F00
    ['Interval 10 days', interval(0x420020, 864000), '420020 | 0A | 00000004 | 000D2F00 00000000'],
    [
      'Structure { Enumeration 254, Integer 255 }',
      structure(0x420020, [enumeration(0x420004, 254), integer(0x420005, 255)]),
      '420020 | 01 | 00000020 | 420004 | 05 | 00000004 | 000000FE 00000000 | 420005 | 02 | 00000004 | 000000FF 00000000',
    ],
  ];
  for (const [name, item, bytes] of vectors) {
    it(`${name} encodes and decodes exactly as the spec shows`, () => {
      assert.equal(encodeTtlv(item).toString('hex'), hex(bytes).toString('hex'));
      assert.deepEqual(decodeTtlv(hex(bytes)), item);
    });
  }
});

describe('KMIP TTLV: round trips', () => {
  it('every type, with edge values', () => {
    const item = structure(Tag.RequestMessage, [
      integer(Tag.BatchCount, -1),
      integer(Tag.BatchCount, 0x7fffffff),
      integer(Tag.BatchCount, -0x80000000),
      enumeration(Tag.Operation, 0xffffffff),
      longInteger(0x420020, -(1n << 63n)),
      longInteger(0x420020, (1n << 63n) - 1n),
      boolean(0x420020, false),
      textString(Tag.NameValue, ''),
      textString(Tag.NameValue, 'grüße 🔑 exactly-8'),
      byteString(Tag.Data, Buffer.alloc(0)),
      byteString(Tag.Data, randomBytes(8)),
      byteString(Tag.Data, randomBytes(1001)),
      dateTime(0x420020, 0n),
      dateTime(0x420020, -1n),
      interval(0x420020, 0),
      structure(Tag.Attribute, []),
      structure(Tag.Attribute, [structure(Tag.AttributeValue, [textString(Tag.NameValue, 'nested')])]),
      structure(0x540001, [textString(0x540002, 'vendor extension tags')]),
    ]);
    const buf = encodeTtlv(item);
    assert.equal(buf.length % 8, 0);
    assert.equal(ttlvFrameLength(buf), buf.length);
    assert.deepEqual(decodeTtlv(buf), item);
  });

  it('Big Integers of both signs and many sizes', () => {
    const values = [
      0n,
      1n,
      -1n,
      127n,
      128n,
      -128n,
      -129n,
      255n,
      256n,
      (1n << 63n) - 1n,
      1n << 63n,
      -(1n << 63n),
      -(1n << 63n) - 1n,
      1n << 64n,
      -(1n << 64n),
    ];
    for (let i = 0; i < 50; i++) {
      const v = BigInt('0x' + randomBytes(1 + (i % 40)).toString('hex'));
      values.push(v, -v);
    }
    for (const v of values) {
      const buf = encodeTtlv(bigInteger(0x420020, v));
      assert.equal((buf.length - 8) % 8, 0);
      const back = decodeTtlv(buf);
      assert.equal(back.type, 'BigInteger');
      assert.equal(back.value, v, `round trip of ${v}`);
    }
    // the spec's sign extension: -1 is eight 0xFF bytes
    assert.equal(encodeTtlv(bigInteger(0x420020, -1n)).subarray(8).toString('hex'), 'ffffffffffffffff');
  });

  it('the encoder refuses values that do not fit their type', () => {
    for (const bad of [
      integer(0x420020, 2 ** 31),
      integer(0x420020, 1.5),
      enumeration(0x420020, -1),
      interval(0x420020, 2 ** 32),
      longInteger(0x420020, 1n << 63n),
      integer(0x1000000, 1),
    ]) {
      assert.throws(
        () => encodeTtlv(bad),
        (e: unknown) => e instanceof KeyportError && e.code === 'INVALID_INPUT',
      );
    }
  });
});

describe('KMIP TTLV: the decoder rejects malformed input cleanly', () => {
  const good = encodeTtlv(
    structure(Tag.ResponseMessage, [
      structure(Tag.ResponseHeader, [integer(Tag.BatchCount, 1)]),
      structure(Tag.BatchItem, [
        enumeration(Tag.Operation, Operation.Get),
        textString(Tag.UniqueIdentifier, 'abc'),
        byteString(Tag.Data, Buffer.from('0123456789')),
      ]),
    ]),
  );

  it('every truncation of a valid message', () => {
    for (let n = 0; n < good.length; n++) rejects(good.subarray(0, n));
  });

  it('trailing bytes', () => rejects(Buffer.concat([good, Buffer.alloc(8)]), /trailing/));

  it('a declared length far beyond the buffer, without allocating it', () => {
    rejects(hex('420020 | 08 | FFFFFFFF | 0000000000000000'), /runs past/);
    rejects(hex('420020 | 01 | FFFFFFF8'), /runs past/);
    // a child claiming more than its parent structure holds, though the buffer has the bytes
    const inner = hex('420020 | 01 | 00000010 | 420004 | 08 | 00000010 | 0000000000000000 | 0000000000000000');
    rejects(inner, /runs past/);
  });

  it('wrong fixed lengths, unknown types, foreign tags, bad padding, bad booleans, bad UTF-8', () => {
    rejects(hex('420020 | 02 | 00000008 | 0000000000000008'), /Integer with length 8/);
    rejects(hex('420020 | 03 | 00000004 | 0000000100000000'), /LongInteger with length 4/);
    rejects(hex('420020 | 06 | 00000008 | 0000000000000002'), /Boolean/);
    rejects(hex('420020 | 04 | 00000004 | 0000000100000000'), /Big Integer/);
    rejects(hex('420020 | 04 | 00000000'), /Big Integer/);
    rejects(hex('420020 | 0B | 00000004 | 0000000100000000'), /unknown item type/);
    rejects(hex('420020 | 00 | 00000004 | 0000000100000000'), /unknown item type/);
    rejects(hex('430020 | 02 | 00000004 | 0000000100000000'), /not a KMIP tag/);
    rejects(hex('420020 | 02 | 00000004 | 0000000100000001'), /padding/);
    rejects(hex('420020 | 08 | 00000003 | 0102030000000001'), /padding/);
    rejects(hex('420020 | 07 | 00000002 | C328000000000000'), /UTF-8/);
    rejects(hex('420020 | 01 | 00000004 | 0000000000000000'), /multiple of 8/);
  });

  it('nesting deeper than the limit', () => {
    let item: TtlvItem = integer(0x420020, 1);
    for (let i = 0; i < MAX_DEPTH + 2; i++) item = structure(0x420020, [item]);
    // build the bytes by hand: the encoder refuses to write it
    assert.throws(
      () => encodeTtlv(item),
      (e: unknown) => e instanceof KeyportError && e.code === 'INVALID_INPUT',
    );
    const depth = MAX_DEPTH + 2;
    const parts: Buffer[] = [];
    for (let i = 0; i < depth; i++) {
      const h = Buffer.alloc(8);
      h.writeUIntBE(0x420020, 0, 3);
      h[3] = 1;
      h.writeUInt32BE(16 + 8 * (depth - 1 - i), 4);
      parts.push(h);
    }
    parts.push(hex('420020 | 02 | 00000004 | 0000000100000000'));
    rejects(Buffer.concat(parts), /nested deeper/);
  });

  it('20 000 random mutations never throw anything but INVALID_INPUT KeyportErrors', () => {
    // deterministic PRNG (xorshift32) so a failure is reproducible from the printed iteration
    let s = 0x9e3779b9;
    const rnd = (n: number) => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return (s >>> 0) % n;
    };
    let decoded = 0;
    for (let i = 0; i < 20_000; i++) {
      const buf = Buffer.from(good);
      let b: Buffer = buf;
      const kind = rnd(6);
      const muts = 1 + rnd(4);
      for (let m = 0; m < muts; m++) {
        if (kind === 0) b[rnd(b.length)] ^= 1 << rnd(8);
        else if (kind === 1) b[rnd(b.length)] = rnd(256);
        else if (kind === 2) {
          // rewrite a length field with a small or a huge value
          const at = 8 * rnd(Math.floor(b.length / 8)) + 4;
          if (at + 4 <= b.length) b.writeUInt32BE(rnd(2) ? rnd(0x100) : (rnd(0x10000) * 0x10000 + rnd(0x10000)) >>> 0, at);
        } else if (kind === 3) b = b.subarray(0, rnd(b.length + 1));
        else if (kind === 4) b = Buffer.concat([b.subarray(0, rnd(b.length)), randomBytes(rnd(24)), b.subarray(rnd(b.length))]);
        else if (b.length > 3) b[3 + 8 * rnd(Math.floor((b.length - 3) / 8))] = rnd(16);
      }
      try {
        decodeTtlv(b);
        decoded++;
      } catch (e) {
        if (!(e instanceof KeyportError) || e.code !== 'INVALID_INPUT') {
          assert.fail(`iteration ${i}: ${b.toString('hex')} threw ${String(e)}`);
        }
      }
    }
    // some mutations (e.g. inside a byte string) leave a valid message: the loop exercised both paths
    assert.ok(decoded > 0);
  });

  it('fully random input', () => {
    for (let i = 0; i < 5000; i++) {
      const b = randomBytes(i % 64);
      if (i % 2 && b.length >= 3) b.writeUIntBE(0x420000 + (i % 256), 0, 3);
      try {
        decodeTtlv(b);
      } catch (e) {
        assert.ok(e instanceof KeyportError && e.code === 'INVALID_INPUT', String(e));
      }
    }
  });
});
