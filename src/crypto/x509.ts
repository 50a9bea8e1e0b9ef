/**
 * Self-signed certificates (node:crypto parses certificates but cannot make them), built with
 * @peculiar/x509: the dev server's TLS certificate, and the client certificate a KES API key stands for.
 * Signing goes through WebCrypto, so making a certificate is asynchronous.
 */
import { createPublicKey, randomBytes, webcrypto, type KeyObject } from 'node:crypto';

type X509 = typeof import('@peculiar/x509');
let lib: Promise<X509> | undefined;

/**
 * @peculiar/x509 resolves its algorithm providers with tsyringe, which needs the Reflect metadata API
 * (normally the reflect-metadata package, which keyport does not depend on). The four functions it
 * uses are added here, only where no such API is installed, before the library is loaded.
 */
function ensureReflectMetadata(): void {
  const R = Reflect as unknown as Record<string, unknown>;
  if (typeof R['getMetadata'] === 'function') return;
  const store = new WeakMap<object, Map<PropertyKey | undefined, Map<unknown, unknown>>>();
  const own = (target: object, prop: PropertyKey | undefined, create: boolean) => {
    let byProp = store.get(target);
    if (!byProp && create) store.set(target, (byProp = new Map()));
    let m = byProp?.get(prop);
    if (!m && create) byProp!.set(prop, (m = new Map()));
    return m;
  };
  const defineMetadata = (key: unknown, value: unknown, target: object, prop?: PropertyKey) => {
    own(target, prop, true)!.set(key, value);
  };
  const getOwnMetadata = (key: unknown, target: object, prop?: PropertyKey) => own(target, prop, false)?.get(key);
  const getMetadata = (key: unknown, target: object, prop?: PropertyKey): unknown => {
    for (let t: object | null = target; t; t = Object.getPrototypeOf(t)) {
      const m = own(t, prop, false);
      if (m?.has(key)) return m.get(key);
    }
    return undefined;
  };
  const metadata = (key: unknown, value: unknown) => (target: object, prop?: PropertyKey) => defineMetadata(key, value, target, prop);
  Object.assign(R, { defineMetadata, getOwnMetadata, getMetadata, metadata });
}

function x509(): Promise<X509> {
  lib ??= (async () => {
    ensureReflectMetadata();
    const m = await import('@peculiar/x509');
    m.cryptoProvider.set(webcrypto as unknown as Crypto);
    return m;
  })();
  return lib;
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
export async function selfSignedCertificate(privateKey: KeyObject, o: CertOptions): Promise<Buffer> {
  const x = await x509();
  const ed = privateKey.asymmetricKeyType === 'ed25519';
  if (!ed && (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1'))
    throw new TypeError('selfSignedCertificate: an Ed25519 or ECDSA P-256 key is needed');
  const alg = ed ? { name: 'Ed25519' } : { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const subtle = webcrypto.subtle;
  // node's webcrypto key type and the DOM's differ only in usages newer than the library's typings
  const keys = {
    privateKey: await subtle.importKey('pkcs8', privateKey.export({ type: 'pkcs8', format: 'der' }), alg, false, ['sign']),
    publicKey: await subtle.importKey('spki', createPublicKey(privateKey).export({ type: 'spki', format: 'der' }), alg, true, ['verify']),
  } as unknown as CryptoKeyPair;
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(notBefore.getTime() + (o.days ?? 365) * 86_400_000);
  // RFC 5280: a positive serial of at most 20 bytes; 0x40 keeps it 16 bytes long and non-zero
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x3f) | 0x40;
  const san = [
    ...(o.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(o.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const usage = o.usage ?? ['server', 'client'];
  const cert = await x.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString('hex'),
    name: [{ CN: [o.commonName] }],
    notBefore,
    notAfter,
    signingAlgorithm: alg,
    keys,
    extensions: [
      ...(san.length ? [new x.SubjectAlternativeNameExtension(san)] : []),
      new x.ExtendedKeyUsageExtension(usage.map((u) => (u === 'server' ? x.ExtendedKeyUsage.serverAuth : x.ExtendedKeyUsage.clientAuth))),
      new x.KeyUsagesExtension(x.KeyUsageFlags.digitalSignature, true),
      await x.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return Buffer.from(cert.rawData);
}

export function certToPem(der: Buffer): string {
  return `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`;
}
