/**
 * The gcpkms: driver.
 *
 * NO CLOUD KMS EMULATOR CAN BE HAD ON THIS KIND OF MACHINE (see scripts/testbed/gcpkms.sh): the Go
 * module proxy here refuses the Cloud KMS emulators and no PyPI/npm package implements the API. So:
 *  - always run: URI / key-name / endpoint parsing, CRC32C, the gRPC-status -> KeyportError table (a
 *    unit check of our mapping, NOT a verification against Cloud KMS), and two real-socket failures
 *    through the real @google-cloud/kms gRPC client (a closed port -> UNAVAILABLE, a peer that never
 *    answers -> TIMEOUT, health() never throws);
 *  - the KMS behaviour (generate, sign, decrypt, encrypt, delete, list, import) runs ONLY when
 *    KEYPORT_GCPKMS_ENDPOINT=host:port names a plaintext Cloud KMS gRPC endpoint (an emulator run
 *    elsewhere); it is deliberately not gated through skipUnless, which would fail CI here.
 * Signatures are checked with node:crypto, never with the driver.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  createCipheriv,
  createDecipheriv,
  createPublicKey,
  generateKeyPairSync,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  verify,
  constants as C,
} from 'node:crypto';
import { factory, parseGcpParams, parseGcpEndpoint, parseKeyRef, crc32c, mapGcpError, wrapRsaAes } from '../../src/kms/gcp/index.js';
import type { Driver, SigningAlgoSpec, SigningKeySpec } from '../../src/kms/driver.js';
import { isKeyportError, type ErrorCode } from '../../src/errors.js';
import { TESTBED_STATE } from '../support/testbed.js';
import { createRequire } from 'node:module';
import { rejectsCode } from '../support/rejects.js';

/** the grpc-js copy @google-cloud/kms uses (through its google-gax) */
function grpcJs(): typeof import('@grpc/grpc-js') {
  const req = createRequire(import.meta.url);
  return (createRequire(req.resolve('@google-cloud/kms'))('google-gax') as { grpc: typeof import('@grpc/grpc-js') }).grpc;
}

function throwsCode(f: () => unknown, code: ErrorCode): void {
  assert.throws(f, (e: unknown) => isKeyportError(e, code), `expected ${code}`);
}

const RING = 'projects/p1/locations/europe-west1/keyRings/ring1';

describe('gcpkms URI and key names (no KMS needed)', () => {
  it('parses the KMS URI params, with location defaulting to global', () => {
    const p = parseGcpParams({ project: 'p1', keyring: 'ring1', endpoint: '127.0.0.1:9010', 'timeout-ms': '2500' });
    assert.equal(p.ring, 'projects/p1/locations/global/keyRings/ring1');
    assert.deepEqual(p.endpoint, { host: '127.0.0.1', port: 9010, tls: false });
    assert.equal(p.timeoutMs, 2500);
    assert.equal(p.protection, 'SOFTWARE');
    assert.equal(
      parseGcpParams({ project: 'p1', location: 'europe-west1', keyring: 'ring1', 'protection-level': 'hsm' }).protection,
      'HSM',
    );
    const saved = process.env.GOOGLE_CLOUD_PROJECT;
    delete process.env.GOOGLE_CLOUD_PROJECT;
    try {
      throwsCode(() => parseGcpParams({ keyring: 'r' }), 'USAGE');
    } finally {
      if (saved !== undefined) process.env.GOOGLE_CLOUD_PROJECT = saved;
    }
    throwsCode(() => parseGcpParams({ project: 'p' }), 'USAGE');
    throwsCode(() => parseGcpParams({ project: 'p', keyring: 'bad/ring' }), 'USAGE');
    throwsCode(() => parseGcpParams({ project: 'p', keyring: 'r', 'timeout-ms': '0' }), 'USAGE');
    throwsCode(() => parseGcpParams({ project: 'p', keyring: 'r', 'protection-level': 'external' }), 'USAGE');
  });

  it('parses endpoints: host:port and http:// are plaintext, https:// is TLS (port 443 by default)', () => {
    assert.deepEqual(parseGcpEndpoint('http://127.0.0.1:9010/'), { host: '127.0.0.1', port: 9010, tls: false });
    assert.deepEqual(parseGcpEndpoint('https://kms.example.internal'), { host: 'kms.example.internal', port: 443, tls: true });
    assert.deepEqual(parseGcpEndpoint('[::1]:8443'), { host: '::1', port: 8443, tls: false });
    throwsCode(() => parseGcpEndpoint('127.0.0.1'), 'USAGE'); // plaintext needs a port
    throwsCode(() => parseGcpEndpoint('http://h:99999'), 'USAGE');
    throwsCode(() => parseGcpEndpoint('http://u@h:1'), 'USAGE');
    throwsCode(() => parseGcpEndpoint('h:1/path'), 'USAGE');
  });

  it('parses key names: a CryptoKey id in the ring, id/cryptoKeyVersions/N, or a full resource name', () => {
    assert.deepEqual(parseKeyRef('wrapper', RING), { key: `${RING}/cryptoKeys/wrapper`, id: 'wrapper' });
    assert.deepEqual(parseKeyRef('wrapper/cryptoKeyVersions/3', RING), {
      key: `${RING}/cryptoKeys/wrapper`,
      id: 'wrapper',
      version: `${RING}/cryptoKeys/wrapper/cryptoKeyVersions/3`,
    });
    const other = 'projects/x/locations/us/keyRings/r2/cryptoKeys/k_1-a';
    assert.deepEqual(parseKeyRef(other, RING), { key: other, id: 'k_1-a' });
    assert.deepEqual(parseKeyRef(`${other}/cryptoKeyVersions/12`, RING), {
      key: other,
      id: 'k_1-a',
      version: `${other}/cryptoKeyVersions/12`,
    });
    throwsCode(() => parseKeyRef('', RING), 'INVALID_NAME');
    throwsCode(() => parseKeyRef('a'.repeat(64), RING), 'INVALID_NAME');
    throwsCode(() => parseKeyRef('has space', RING), 'INVALID_NAME');
    throwsCode(() => parseKeyRef('projects/x/locations/us/keyRings/r2', RING), 'INVALID_NAME');
    throwsCode(() => parseKeyRef(`${other}/cryptoKeyVersions/abc`, RING), 'INVALID_NAME');
    throwsCode(() => parseKeyRef('wrapper/cryptoKeyVersions/', RING), 'INVALID_NAME');
  });

  it('computes CRC32C (Castagnoli) as Cloud KMS does', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283); // the standard check value
    assert.equal(crc32c(Buffer.alloc(0)), 0);
    assert.equal(crc32c(Buffer.alloc(32)), 0x8a9136aa); // RFC 3720 B.4: 32 bytes of zeros
  });

  it('maps gRPC status codes to keyport codes (our table; not a check of Cloud KMS itself)', () => {
    const cases: [number, string, ErrorCode, boolean][] = [
      [5, 'CryptoKey projects/p/.../cryptoKeys/x not found.', 'NOT_FOUND', false],
      [6, 'already exists', 'EXISTS', false],
      [7, "Permission 'cloudkms.cryptoKeyVersions.useToSign' denied", 'PERMISSION', false],
      [16, 'Request had invalid authentication credentials.', 'AUTH', false],
      [8, 'Quota exceeded', 'THROTTLED', true],
      [14, 'No connection established', 'UNAVAILABLE', true],
      [4, 'Deadline exceeded after 1.0s', 'TIMEOUT', true],
      [9, 'projects/p/.../cryptoKeyVersions/1 is not enabled, current state is: DESTROYED.', 'KEY_DISABLED', false],
      [12, 'Method not implemented', 'UNSUPPORTED', false],
      [3, 'Decryption failed: the ciphertext is invalid.', 'INVALID_INPUT', false],
    ];
    for (const [num, details, code, retryable] of cases) {
      const e = mapGcpError(Object.assign(new Error(`${num} X: ${details}`), { code: num, details }), 'Op');
      assert.equal(e.code, code, `${num} -> ${code}`);
      assert.equal(e.retryable, retryable);
      assert.ok(!e.message.includes('\n'));
    }
    assert.equal(
      mapGcpError({ code: 3, details: 'Decryption failed: the ciphertext is invalid.' }, 'Decrypt', true).code,
      'INVALID_CIPHERTEXT',
    );
    assert.equal(
      mapGcpError(new Error('Getting metadata from plugin failed with error: Could not load the default credentials.'), 'Op').code,
      'AUTH',
    );
    assert.equal(
      mapGcpError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), 'Op').code,
      'UNAVAILABLE',
    );
    assert.equal(mapGcpError(new Error('something odd\n    at stack'), 'Op').code, 'INTERNAL');
    assert.ok(!mapGcpError(new Error('something odd\n    at stack'), 'Op').message.includes('\n'));
  });

  it('import wrapping: AES-KWP is RFC 5649 (its test vectors), and the RSA-OAEP-SHA-256 || KWP blob unwraps with node:crypto', () => {
    // RFC 5649 section 6 vectors (192-bit KEK): node's id-aes*-wrap-pad with IV a65959a6 is RFC 5649
    const kek = Buffer.from('5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8', 'hex');
    for (const [key, wrapped] of [
      ['c37b7e6492584340bed12207808941155068f738', '138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a'],
      ['466f7250617369', 'afbeb0f07dfbf5419200f2ccb50bb24f'],
    ] as const) {
      const c = createCipheriv('id-aes192-wrap-pad', kek, Buffer.from('a65959a6', 'hex'));
      assert.equal(Buffer.concat([c.update(Buffer.from(key, 'hex')), c.final()]).toString('hex'), wrapped);
    }
    // the blob GCP's RSA_OAEP_3072_SHA256_AES_256 import method expects, unwrapped independently
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 3072 });
    const secret = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'der' });
    const blob = wrapRsaAes(publicKey.export({ type: 'spki', format: 'pem' }) as string, secret);
    const aes = privateDecrypt({ key: privateKey, padding: C.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, blob.subarray(0, 384));
    assert.equal(aes.length, 32);
    const d = createDecipheriv('id-aes256-wrap-pad', aes, Buffer.from('a65959a6', 'hex'));
    assert.deepEqual(Buffer.concat([d.update(blob.subarray(384)), d.final()]), secret);
  });

  it('refuses a URI without project or key ring before loading anything', async () => {
    await rejectsCode(factory({ keyring: 'r', project: '' }, 'gcpkms:keyring=r'), 'USAGE');
    await rejectsCode(factory({ project: 'p' }, 'gcpkms:project=p'), 'USAGE');
  });
});

describe('gcpkms network failures through the real gRPC client (real sockets, no KMS needed)', () => {
  let closedPort: number;
  let hang: Server;
  let hangPort: number;
  const sockets: Socket[] = [];

  before(async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    closedPort = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    // accepts TCP and never answers a byte: an unresponsive KMS
    hang = createServer((s) => {
      sockets.push(s);
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
    hangPort = (hang.address() as { port: number }).port;
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => hang.close(() => r()));
  });

  it('a closed port is UNAVAILABLE (retryable), and health() reports it without throwing', async () => {
    const d = await factory({ project: 'p', keyring: 'r', endpoint: `127.0.0.1:${closedPort}`, 'timeout-ms': '5000' }, 'gcpkms:…');
    try {
      const h = await d.health();
      assert.equal(h.state, 'failed');
      assert.match((h as { reason: string }).reason, /ECONNREFUSED|No connection/);
      await rejectsCode(d.generateSymmetricKey('k1'), 'UNAVAILABLE', true);
      await rejectsCode(d.sign('k1', Buffer.from('x'), 'ecdsa-sha256'), 'UNAVAILABLE', true);
      await rejectsCode(d.decryptSymmetric('k1', Buffer.from('x')), 'UNAVAILABLE', true);
      // local validation comes first: no network needed to refuse these
      await rejectsCode(d.encryptSymmetric('k1', Buffer.alloc(0)), 'INVALID_INPUT');
      await rejectsCode(d.sign('bad name', Buffer.from('x'), 'ecdsa-sha256'), 'INVALID_NAME');
      await rejectsCode(d.generateSymmetricKey('x'.repeat(64)), 'INVALID_NAME');
    } finally {
      await d.close?.();
    }
  });

  it('a real gRPC server without the KMS service: calls reach it over plaintext gRPC and UNIMPLEMENTED is UNSUPPORTED', async () => {
    // a bare grpc-js server answers UNIMPLEMENTED to every method: this checks transport, the no-auth
    // emulator mode and the status mapping end to end, not any KMS behaviour
    const grpc = grpcJs();
    const server = new grpc.Server();
    const port = await new Promise<number>((res, rej) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
    );
    const d = await factory({ project: 'p', keyring: 'r', endpoint: `127.0.0.1:${port}`, 'timeout-ms': '5000' }, 'gcpkms:…');
    try {
      await rejectsCode(d.generateSymmetricKey('k1'), 'UNSUPPORTED', false);
      await rejectsCode(d.keyExistsAndIsActive('k1'), 'UNSUPPORTED');
      const e = await rejectsCode(d.importKey!({ kind: 'symmetric', spec: 'aes256', secret: randomBytes(32) }, 'k2'), 'UNSUPPORTED');
      assert.doesNotMatch(e.message, /[0-9a-f]{64}/, 'no key bytes in the message');
      assert.equal((await d.health()).state, 'failed');
    } finally {
      await d.close?.();
      server.forceShutdown();
    }
  });

  it('a peer that never answers is TIMEOUT (retryable) after timeout-ms, and health() does not throw', async () => {
    const d = await factory({ project: 'p', keyring: 'r', endpoint: `http://127.0.0.1:${hangPort}`, 'timeout-ms': '800' }, 'gcpkms:…');
    try {
      await rejectsCode(d.getPublicKey('k1'), 'TIMEOUT', true);
      const h = await d.health();
      assert.equal(h.state, 'failed');
    } finally {
      await d.close?.();
    }
  });
});

// ---------------------------------------------------------------------------------------------

const ENDPOINT = process.env.KEYPORT_GCPKMS_ENDPOINT;
const noEmulator = 'SKIPPED: no Cloud KMS emulator on this machine (set KEYPORT_GCPKMS_ENDPOINT=host:port to run these)';
if (!ENDPOINT) {
  try {
    mkdirSync(TESTBED_STATE, { recursive: true });
    appendFileSync(
      join(TESTBED_STATE, 'skipped.txt'),
      'gcpkms: no Cloud KMS emulator can be had here; the GCP driver is verified only for parsing and network failures\n',
    );
  } catch {
    /* the notice is best effort */
  }
}

const SIGN: [SigningKeySpec, SigningAlgoSpec, 'sha256' | 'sha384'][] = [
  ['ec-p256', 'ecdsa-sha256', 'sha256'],
  ['ec-p384', 'ecdsa-sha384', 'sha384'],
  ['secp256k1', 'ecdsa-sha256', 'sha256'],
  ['rsa-2048', 'rsa-pss-sha256', 'sha256'],
  ['rsa-3072', 'rsa-pss-sha256', 'sha256'],
];

describe('gcpkms driver against a Cloud KMS emulator (KEYPORT_GCPKMS_ENDPOINT)', { skip: ENDPOINT ? false : noEmulator }, () => {
  let d: Driver;
  const run = `t${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  const project = process.env.KEYPORT_GCPKMS_PROJECT ?? 'keyport-test';
  const location = process.env.KEYPORT_GCPKMS_LOCATION ?? 'global';
  const keyring = `ring-${run}`;

  before(async () => {
    d = await factory(
      { project, location, keyring, endpoint: ENDPOINT!, 'timeout-ms': '15000' },
      `gcpkms:project=${project};keyring=${keyring}`,
    );
    assert.equal((await d.health()).state, 'ok');
  });
  after(async () => {
    await d?.close?.();
  });

  for (const [spec, algo, hash] of SIGN) {
    it(`${spec}: generate, exists, sign with the KMS, verify with node:crypto, public key matches the algorithm`, async (t) => {
      let id: string;
      try {
        id = await d.generateSigningKeyPair(spec, `sig-${spec}-${run}`);
      } catch (e) {
        if (spec === 'secp256k1' && isKeyportError(e) && ['UNSUPPORTED', 'INVALID_INPUT'].includes(e.code)) {
          t.diagnostic(`emulator refused secp256k1 (GCP offers it at protection level HSM only): ${e.message}`);
          return;
        }
        throw e;
      }
      assert.match(id, new RegExp(`^projects/${project}/locations/${location}/keyRings/${keyring}/cryptoKeys/sig-${spec}-`));
      await d.keyExistsAndIsActive(id);
      const pub = await d.getPublicKey(id);
      assert.equal(pub.spec, spec);
      const key = createPublicKey({ key: pub.spki, format: 'der', type: 'spki' });
      const data = randomBytes(5000);
      const sig = await d.sign(id, data, algo);
      const ok = spec.startsWith('rsa')
        ? verify(hash, data, { key, padding: C.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig)
        : verify(hash, data, { key, dsaEncoding: 'der' }, sig);
      assert.ok(ok, `${spec} signature verifies with node:crypto`);
      assert.ok(
        !verify(
          hash,
          Buffer.concat([data, Buffer.from([1])]),
          spec.startsWith('rsa') ? { key, padding: C.RSA_PKCS1_PSS_PADDING, saltLength: 32 } : { key, dsaEncoding: 'der' },
          sig,
        ),
      );
      // the short name in the ring works too
      const sig2 = await d.sign(`sig-${spec}-${run}`, data, algo);
      assert.ok(
        spec.startsWith('rsa')
          ? verify(hash, data, { key, padding: C.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig2)
          : verify(hash, data, { key, dsaEncoding: 'der' }, sig2),
      );
      // a wrong algorithm for the key is KEY_USAGE, decided before any signature is made
      await rejectsCode(d.sign(id, data, spec === 'ec-p384' ? 'ecdsa-sha256' : 'ecdsa-sha384'), 'KEY_USAGE');
    });
  }

  it('rsa-3072 OAEP: encrypt locally with the SPKI, decrypt in the KMS', async () => {
    const id = await d.generateEncryptionKeyPair('rsa-3072', `enc-${run}`);
    const pub = await d.getPublicKey(id);
    assert.equal(pub.spec, 'rsa-3072');
    const secret = randomBytes(32);
    const ct = publicEncrypt(
      { key: createPublicKey({ key: pub.spki, format: 'der', type: 'spki' }), padding: C.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      secret,
    );
    assert.deepEqual(await d.decryptAsymmetric(id, ct, 'rsa-oaep-sha256'), secret);
    await rejectsCode(d.sign(id, secret, 'rsa-pss-sha256'), 'KEY_USAGE');
  });

  it('describeKey (the registration check, issue 11): purpose and algorithm as the KMS records them', async () => {
    const pick = async (id: string) => {
      const x = await d.describeKey!(id);
      return { spec: x.spec, sign: x.sign, decrypt: x.decrypt };
    };
    assert.deepEqual(await pick(await d.generateSigningKeyPair('ec-p256', `dsig-${run}`)), { spec: 'ec-p256', sign: true, decrypt: false });
    assert.deepEqual(await pick(await d.generateEncryptionKeyPair('rsa-2048', `denc-${run}`)), {
      spec: 'rsa-2048',
      sign: false,
      decrypt: true,
    });
    assert.deepEqual(await pick(await d.generateSymmetricKey(`dsym-${run}`)), { spec: 'aes256', sign: false, decrypt: true });
  });

  it('symmetric: round trip, tampered ciphertext refused, no public key', async () => {
    const id = await d.generateSymmetricKey(`sym-${run}`);
    const pt = randomBytes(1000);
    const ct = await d.encryptSymmetric(id, pt);
    assert.notDeepEqual(ct.subarray(0, pt.length), pt);
    assert.deepEqual(await d.decryptSymmetric(id, ct), pt);
    const bad = Buffer.from(ct);
    bad[bad.length - 1]! ^= 1;
    await rejectsCode(d.decryptSymmetric(id, bad), 'INVALID_CIPHERTEXT');
    await rejectsCode(d.getPublicKey(id), 'KEY_USAGE');
  });

  it('listKeys sees the keys made here; delete destroys them; unknown keys are NOT_FOUND', async () => {
    const id = await d.generateSymmetricKey(`del-${run}`);
    const names: string[] = [];
    for await (const k of d.listKeys!()) names.push(k.name ?? k.keyId);
    assert.ok(names.includes(`del-${run}`), `listKeys has del-${run}: ${names.join(',')}`);
    await d.deleteKey(id);
    await rejectsCode(d.keyExistsAndIsActive(id), 'KEY_DISABLED');
    await rejectsCode(d.encryptSymmetric(id, Buffer.from('x')), 'KEY_DISABLED');
    await rejectsCode(d.keyExistsAndIsActive(`nope-${run}`), 'NOT_FOUND');
    await rejectsCode(d.sign(`nope-${run}`, Buffer.from('x'), 'ecdsa-sha256'), 'NOT_FOUND');
    await rejectsCode(d.deleteKey(`nope-${run}`), 'NOT_FOUND');
    // the name is never freed by GCP: generating it again adds a fresh version
    const again = await d.generateSymmetricKey(`del-${run}`);
    assert.equal(again, id);
    await d.keyExistsAndIsActive(again);
    assert.deepEqual(await d.decryptSymmetric(again, await d.encryptSymmetric(again, Buffer.from('hi'))), Buffer.from('hi'));
  });

  it('importKey: aes256 and ec-p256 through an import job, or UNSUPPORTED where the emulator lacks import jobs', async (t) => {
    const aes = randomBytes(32);
    let symId: string;
    try {
      symId = await d.importKey!({ kind: 'symmetric', spec: 'aes256', secret: aes }, `imp-sym-${run}`);
    } catch (e) {
      if (isKeyportError(e, 'UNSUPPORTED')) {
        t.diagnostic(`import not verified: ${e.message}`);
        return;
      }
      throw e;
    }
    assert.deepEqual(await d.decryptSymmetric(symId, await d.encryptSymmetric(symId, Buffer.from('imported'))), Buffer.from('imported'));
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const ecId = await d.importKey!(
      { kind: 'signing', spec: 'ec-p256', secret: privateKey.export({ type: 'pkcs8', format: 'der' }) },
      `imp-ec-${run}`,
    );
    const pub = await d.getPublicKey(ecId);
    assert.deepEqual(pub.spki, publicKey.export({ type: 'spki', format: 'der' }), 'the KMS holds exactly the imported key');
    const data = Buffer.from('signed by an imported key');
    assert.ok(verify('sha256', data, { key: publicKey, dsaEncoding: 'der' }, await d.sign(ecId, data, 'ecdsa-sha256')));
  });
});
