/**
 * `keyport doctor` for a KMS URI or a KMS key URI (a wrapper key): is the KMS reachable and how fast,
 * does the key exist and work, which key types the KMS can hold, and — for AWS — which IAM permissions
 * the mode needs, checked by the cheap calls that exercise them where possible. Everything goes
 * through the Driver interface; every problem carries a one-line fix. Nothing is created: a probe
 * only encrypts/decrypts or signs with the key that was named.
 */
import { randomBytes } from 'node:crypto';
import { err, isKeyportError, oneLine, type ErrorCode, type KeyportError } from '../errors.js';
import { KmsAddress, redactGeneric } from './address.js';
import { existsSync, statSync } from 'node:fs';
import { publicKeyObject } from '../crypto/keys.js';
import { verifyData } from '../crypto/sign.js';
import { eciesEncrypt, rsaOaepEncrypt } from '../crypto/asym.js';
import { KEY_TYPES } from '../crypto/keytypes.js';
import { openDriver } from './registry.js';
import { instrument, toKeyportError } from './instrument.js';
import { ENCRYPTION_ALGO_OF, SIGNING_ALGO_OF } from './conformance.js';
import type { Driver, EncryptionKeySpec, SigningKeySpec } from './driver.js';

export type DoctorStatus = 'ok' | 'problem' | 'warning' | 'not-checked' | 'info';

export interface DoctorCheck {
  check: string;
  status: DoctorStatus;
  detail: string;
  /** one line: what to do (problems and warnings) */
  fix?: string;
  ms?: number;
}

export interface DoctorReport {
  uri: string;
  kms: string;
  keyId?: string;
  ok: boolean;
  checks: DoctorCheck[];
}

export interface DoctorOptions {
  /** per-call limit (default 15 s) */
  timeoutMs?: number;
  /** opens the KMS (default openDriver) */
  open?: (address: KmsAddress) => Promise<Driver>;
}

/** a one-line fix for an error a KMS call ended with */
export function fixFor(e: KeyportError, ctx: { scheme: string; permission?: string; what?: string }): string {
  const aws = ctx.scheme === 'awskms';
  switch (e.code as ErrorCode) {
    case 'UNAVAILABLE':
    case 'TIMEOUT':
      return (
        `make the KMS reachable from here: check endpoint/host and port in the URI (\`keyport help uris\`), DNS, proxies and ` +
        `firewalls${aws ? ' (and region=)' : ''}`
      );
    case 'THROTTLED':
      return 'the KMS is throttling: retry later or raise the request quota';
    case 'AUTH':
      return aws
        ? 'fix the AWS credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE / role) keyport runs with'
        : ctx.scheme === 'pkcs11'
          ? 'fix pin-value= (or pin-source=) for the token'
          : 'fix the credentials keyport uses for this KMS';
    case 'PERMISSION':
      return ctx.permission
        ? `grant ${ctx.permission} to the identity keyport runs as${aws ? ' (IAM policy and key policy)' : ''}`
        : 'grant the identity keyport runs as access to this KMS and key';
    case 'NOT_FOUND':
      return `check key-id= in the URI: ${ctx.what ?? 'the key'} does not exist in this KMS (or region/account)`;
    case 'KEY_DISABLED':
      return aws
        ? 'enable the key (aws kms enable-key) or cancel its deletion (aws kms cancel-key-deletion)'
        : 'enable the key (or cancel its scheduled deletion) in the KMS';
    case 'KEY_USAGE':
      return 'use a key whose usage fits: a wrapper key must be a symmetric ENCRYPT_DECRYPT key';
    case 'UNSUPPORTED':
      return `the ${ctx.scheme} driver cannot do this here: see the capability table in the README and \`keyport help uris\``;
    case 'USAGE':
    case 'INVALID_INPUT':
      return `fix the URI: every ${ctx.scheme}: attribute and its default is in \`keyport help uris\` (docs/uris.md)`;
    default:
      return `run \`keyport driver-test ${ctx.scheme}:…\` against this KMS and report the failing check`;
  }
}

// kms:ListKeys: the driver's health check (which `keyport server` and `migrate` rely on) and listing
const AWS_KEY_STORE_PERMISSIONS = [
  'kms:ListKeys',
  'kms:ListAliases',
  'kms:CreateKey',
  'kms:TagResource',
  'kms:DescribeKey',
  'kms:GetPublicKey',
  'kms:Sign',
  'kms:Decrypt',
];
/**
 * Permissions keyport uses but nothing needs: ListKeys (the health check, `key ls` of a KMS) and ListAliases
 * (listing names). Canton's own list for a node (CreateKey, TagResource, Decrypt, Sign, DescribeKey,
 * GetPublicKey) leaves them out, and keyport's node keys work without them: denied, they are a warning.
 */
const AWS_OPTIONAL: Record<string, string> = {
  'kms:ListKeys': 'keyport health checks and listing the KMS need it; keys, signing and Canton nodes do not',
  'kms:ListAliases': 'listing the KMS by name needs it; keys, signing and Canton nodes do not',
};
type KeyKind = 'symmetric' | 'signing' | 'encryption';
const AWS_KEY_PERMISSIONS: Record<KeyKind | 'unknown', string[]> = {
  symmetric: ['kms:ListKeys', 'kms:DescribeKey', 'kms:Encrypt', 'kms:Decrypt'],
  signing: ['kms:ListKeys', 'kms:DescribeKey', 'kms:GetPublicKey', 'kms:Sign'],
  encryption: ['kms:ListKeys', 'kms:DescribeKey', 'kms:GetPublicKey', 'kms:Decrypt'],
  unknown: ['kms:ListKeys', 'kms:DescribeKey', 'kms:Encrypt', 'kms:Decrypt', 'kms:GetPublicKey', 'kms:Sign'],
};

export async function doctorKms(uri: string | KmsAddress, opts: DoctorOptions = {}): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  const add = (c: DoctorCheck) => checks.push(c);
  // parsed once, here at the edge: a KMS address, or a KMS key address (local:FILE is a wrapper key, local:DIR/ a KMS)
  let addr: KmsAddress;
  try {
    addr = typeof uri === 'string' ? KmsAddress.parse(uri) : uri;
  } catch (e) {
    const ke = toKeyportError(e, 'kms');
    return {
      uri: redactGeneric(String(uri)),
      kms: '',
      ok: false,
      checks: [
        { check: 'open', status: 'problem', detail: `${ke.code}: ${oneLine(ke)}`, fix: 'fix the KMS address (docs/connections.md)' },
      ],
    };
  }
  const scheme = addr.scheme;
  const aws = scheme === 'awskms';
  let keyRef: string | undefined = addr.keyId;
  if (scheme === 'local') {
    const p = addr.localFile!;
    keyRef = p && !p.endsWith('/') && !(existsSync(p) && statSync(p).isDirectory()) ? p : undefined;
  }
  const kms = addr.withoutKey();
  const report: DoctorReport = { uri: addr.toString(), kms: kms.toString(), ...(keyRef ? { keyId: keyRef } : {}), ok: true, checks };

  // ---- open ---------------------------------------------------------------------------------
  let raw: Driver;
  const t0 = performance.now();
  try {
    raw = await (opts.open ?? openDriver)(kms);
  } catch (e) {
    const ke = toKeyportError(e, scheme);
    add({
      check: 'open',
      status: 'problem',
      detail: `${ke.code}: ${oneLine(ke)}`,
      fix: fixFor(ke, { scheme }),
      ms: Math.round(performance.now() - t0),
    });
    report.ok = false;
    return report;
  }
  const driver = instrument(raw, { kmsUri: kms, retries: 0, timeoutMs: opts.timeoutMs ?? 15_000 });
  try {
    const perms = new Map<string, { status: DoctorStatus; detail: string; fix?: string }>();
    const perm = (p: string, status: DoctorStatus, detail: string, fix?: string) => {
      const cur = perms.get(p);
      if (cur && cur.status === 'problem') return;
      if (cur && cur.status === 'ok' && status !== 'problem') return;
      perms.set(p, { status, detail, ...(fix ? { fix } : {}) });
    };
    /** record a probe's permission outcome (AWS only) */
    const exercised = (p: string, e?: KeyportError, via?: string) => {
      if (!aws) return;
      if (!e) perm(p, 'ok', `exercised by ${via}`);
      else if (e.code === 'PERMISSION') perm(p, 'problem', `${via}: ${oneLine(e)}`, fixFor(e, { scheme, permission: p }));
      else perm(p, 'not-checked', `${via} failed with ${e.code} before the permission was known`);
    };

    // ---- reachability -------------------------------------------------------------------------
    const th = performance.now();
    const h = await driver.health();
    const ms = Math.round(performance.now() - th);
    // a denied health call is an answer from a KMS that accepted the credentials: a missing permission,
    // not an outage and not bad credentials (AWS says "… is not authorized to perform: kms:ListKeys")
    const denied = h.state !== 'ok' && /AccessDenied|not authorized to perform|PERMISSION_DENIED/i.test(h.reason);
    if (h.state === 'ok') add({ check: 'reachable', status: 'ok', detail: `health ok in ${ms} ms`, ms });
    else if (denied && aws)
      add({
        check: 'reachable',
        status: 'ok',
        detail: `the KMS answers (${ms} ms) and accepted the credentials, but denied the health call (ListKeys)`,
        ms,
      });
    else
      add({
        check: 'reachable',
        status: 'problem',
        detail: `health ${h.state}: ${h.reason}`,
        fix: denied
          ? fixFor({ code: 'PERMISSION' } as KeyportError, { scheme })
          : /timeout|did not answer|refused|unavailable|ECONN|ENOTFOUND|EAI_AGAIN/i.test(h.reason)
            ? fixFor({ code: 'UNAVAILABLE' } as KeyportError, { scheme })
            : /credential|auth|signature|token|pin/i.test(h.reason)
              ? fixFor({ code: 'AUTH' } as KeyportError, { scheme })
              : 'check the KMS URI and that the KMS is up; `keyport driver-test URI` shows more',
        ms,
      });
    // the AWS driver's health check is ListKeys: its answer tells whether kms:ListKeys is granted
    if (h.state === 'ok') exercised('kms:ListKeys', undefined, 'the health check (ListKeys)');
    else if (denied) exercised('kms:ListKeys', err('PERMISSION', h.reason), 'the health check (ListKeys)');

    // ---- supported specs ----------------------------------------------------------------------
    const sig = safeList(() => driver.supportedSigningKeySpecs());
    const enc = safeList(() => driver.supportedEncryptionKeySpecs());
    const asymTypes = new Set<string>([...sig, ...enc]);
    const missing = KEY_TYPES.filter((t) => t !== 'aes256' && !asymTypes.has(t));
    add({
      check: 'key types',
      status: 'info',
      detail:
        `signing: ${sig.join(' ') || 'none'}; encryption: ` +
        `${enc.join(' ') || 'none'}${missing.length ? `; not held by this KMS: ${missing.join(' ')}` : ''}`,
    });

    let keyKind: KeyKind | undefined;
    // (an AWS KMS that only denied ListKeys may still serve the key: its checks go on)
    if (h.state === 'ok' || h.state === 'degraded' || (denied && aws)) {
      if (keyRef !== undefined) keyKind = await checkKey(driver, keyRef, { scheme, add, exercised, isLocal: scheme === 'local' });
      else await checkKeyStoreMode(driver, { scheme, add, exercised });
    }

    // ---- AWS permissions ----------------------------------------------------------------------
    if (aws) {
      // with a key named (a wrapper key, a registered key, possibly a cross-account ARN) nothing is created or tagged
      const needed = keyRef === undefined ? AWS_KEY_STORE_PERMISSIONS : AWS_KEY_PERMISSIONS[keyKind ?? 'unknown'];
      for (const p of needed) {
        const r = perms.get(p);
        if (r && r.status === 'problem' && AWS_OPTIONAL[p])
          add({
            check: `permission ${p}`,
            status: 'warning',
            detail: `${r.detail} (optional: ${AWS_OPTIONAL[p]})`,
            ...(r.fix ? { fix: r.fix } : {}),
          });
        else if (r) add({ check: `permission ${p}`, status: r.status, detail: r.detail, ...(r.fix ? { fix: r.fix } : {}) });
        else
          add({
            check: `permission ${p}`,
            status: 'not-checked',
            detail:
              p === 'kms:CreateKey' || p === 'kms:TagResource'
                ? 'not checked: only creating a key would exercise it (keyport creates and tags the keys it holds here)'
                : p === 'kms:ListKeys' || p === 'kms:ListAliases'
                  ? `not checked: ${p === 'kms:ListKeys' ? 'the health check (ListKeys)' : 'listing keys'} failed before the permission was known`
                  : 'not checked: no call here exercises it without a suitable key',
          });
      }
      if (keyRef?.startsWith('arn:'))
        add({
          check: 'permission kms:CreateKey, kms:TagResource',
          status: 'info',
          detail: 'not needed: the key is given by ARN (possibly another account) and keyport creates nothing',
        });
    }
  } finally {
    await driver.close?.().catch(() => undefined);
  }
  report.ok = !checks.some((c) => c.status === 'problem');
  return report;
}

function safeList<T>(f: () => T[]): T[] {
  try {
    const v = f();
    return Array.isArray(v) ? v : [];
  } catch {
    return [];
  }
}

interface Ctx {
  scheme: string;
  add: (c: DoctorCheck) => void;
  exercised: (p: string, e?: KeyportError, via?: string) => void;
}

async function timed<T>(f: () => Promise<T>): Promise<{ ok: true; value: T; ms: number } | { ok: false; error: KeyportError; ms: number }> {
  const t = performance.now();
  try {
    const value = await f();
    return { ok: true, value, ms: Math.round(performance.now() - t) };
  } catch (e) {
    return { ok: false, error: isKeyportError(e) ? e : toKeyportError(e, 'driver'), ms: Math.round(performance.now() - t) };
  }
}

/** the named key: exists and enabled, what it is, and a probe with it */
async function checkKey(driver: Driver, keyRef: string, c: Ctx & { isLocal: boolean }): Promise<KeyKind | undefined> {
  const { add, exercised, scheme } = c;
  let keyId = keyRef;
  if (driver.resolveKeyId) {
    const r = await timed(() => driver.resolveKeyId!(keyRef));
    if (!r.ok) {
      add({
        check: 'key',
        status: 'problem',
        detail: `resolving ${keyRef}: ${r.error.code}: ${oneLine(r.error)}`,
        fix: fixFor(r.error, { scheme, permission: 'kms:DescribeKey', what: keyRef }),
        ms: r.ms,
      });
      exercised('kms:DescribeKey', r.error, 'resolving the key');
      return;
    }
    keyId = r.value;
  }
  const ex = await timed(() => driver.keyExistsAndIsActive(keyId));
  exercised('kms:DescribeKey', ex.ok ? undefined : ex.error, 'keyExistsAndIsActive');
  if (!ex.ok) {
    if (c.isLocal && ex.error.code === 'NOT_FOUND') {
      add({
        check: 'key',
        status: 'warning',
        detail: `${keyId} does not exist yet`,
        fix: 'nothing to do if this is a new wrapper: local: creates the key file on first use (keyport protect enable)',
        ms: ex.ms,
      });
      return;
    }
    add({
      check: 'key',
      status: 'problem',
      detail: `${keyRef}: ${ex.error.code}: ${oneLine(ex.error)}`,
      fix: fixFor(ex.error, { scheme, permission: 'kms:DescribeKey', what: keyRef }),
      ms: ex.ms,
    });
    return;
  }
  add({ check: 'key', status: 'ok', detail: `${keyRef}${keyId !== keyRef ? ` (${keyId})` : ''} exists and is enabled`, ms: ex.ms });

  // symmetric or asymmetric? getPublicKey answers for asymmetric keys
  const pk = await timed(() => driver.getPublicKey(keyId));
  if (pk.ok) {
    exercised('kms:GetPublicKey', undefined, 'getPublicKey');
    const spec = pk.value.spec;
    let pub;
    try {
      pub = publicKeyObject(pk.value.spki);
    } catch {
      add({
        check: 'key probe',
        status: 'problem',
        detail: `the KMS returned a public key that is not valid SPKI for ${spec}`,
        fix: `run \`keyport driver-test\` against this KMS and report it`,
      });
      return undefined;
    }
    const data = randomBytes(32);
    if (spec in SIGNING_ALGO_OF) {
      const algo = SIGNING_ALGO_OF[spec as SigningKeySpec];
      const s = await timed(() => driver.sign(keyId, data, algo));
      if (s.ok) {
        exercised('kms:Sign', undefined, 'a probe signature');
        const good = verifyData(spec as SigningKeySpec, pub, data, s.value, 'der');
        add({
          check: 'key probe',
          status: good ? 'ok' : 'problem',
          detail: good
            ? `${spec} signing key: a probe ${algo} signature verifies (${s.ms} ms)`
            : `${spec}: the KMS's ${algo} signature does not verify with its public key`,
          ...(good ? {} : { fix: 'the key or driver is broken: run `keyport driver-test` against this KMS' }),
          ms: s.ms,
        });
        return 'signing';
      }
      if (s.error.code === 'PERMISSION') {
        exercised('kms:Sign', s.error, 'a probe signature');
        add({
          check: 'key probe',
          status: 'problem',
          detail: `signing: ${oneLine(s.error)}`,
          fix: fixFor(s.error, { scheme, permission: 'kms:Sign' }),
          ms: s.ms,
        });
        return 'signing';
      }
      if (!(spec in ENCRYPTION_ALGO_OF) || !['KEY_USAGE', 'UNSUPPORTED', 'INVALID_INPUT'].includes(s.error.code)) {
        add({
          check: 'key probe',
          status: 'problem',
          detail: `signing with ${algo}: ${s.error.code}: ${oneLine(s.error)}`,
          fix: fixFor(s.error, { scheme, permission: 'kms:Sign' }),
          ms: s.ms,
        });
        return 'signing';
      }
    }
    if (spec in ENCRYPTION_ALGO_OF) {
      const algo = ENCRYPTION_ALGO_OF[spec as EncryptionKeySpec];
      const ct = algo === 'rsa-oaep-sha256' ? rsaOaepEncrypt(pub, data) : eciesEncrypt(pub, data);
      const d = await timed(() => driver.decryptAsymmetric(keyId, ct, algo));
      exercised('kms:Decrypt', d.ok ? undefined : d.error, 'a probe decryption');
      if (d.ok && d.value.equals(data))
        add({
          check: 'key probe',
          status: 'ok',
          detail: `${spec} encryption key: a probe encrypted locally (${algo}) decrypts in the KMS (${d.ms} ms)`,
          ms: d.ms,
        });
      else if (d.ok)
        add({
          check: 'key probe',
          status: 'problem',
          detail: `${spec}: the KMS decrypted the probe to other bytes`,
          fix: 'the key or driver is broken: run `keyport driver-test` against this KMS',
        });
      else
        add({
          check: 'key probe',
          status: 'problem',
          detail: `decrypting with ${algo}: ${d.error.code}: ${oneLine(d.error)}`,
          fix: fixFor(d.error, { scheme, permission: 'kms:Decrypt' }),
          ms: d.ms,
        });
      return 'encryption';
    }
    add({ check: 'key probe', status: 'not-checked', detail: `${spec} key: no probe for this key spec` });
    return undefined;
  }
  if (pk.error.code === 'PERMISSION') {
    // a symmetric key would more likely say KEY_USAGE/UNSUPPORTED; do not guess: probe encryption next
    exercised('kms:GetPublicKey', pk.error, 'getPublicKey');
  }
  const probe = randomBytes(32);
  const e = await timed(() => driver.encryptSymmetric(keyId, probe));
  exercised('kms:Encrypt', e.ok ? undefined : e.error, 'a probe encryption');
  if (!e.ok) {
    add({
      check: 'key probe',
      status: 'problem',
      detail: `encrypting a probe: ${e.error.code}: ${oneLine(e.error)}`,
      fix: fixFor(e.error, { scheme, permission: 'kms:Encrypt' }),
      ms: e.ms,
    });
    return e.error.code === 'PERMISSION' ? 'symmetric' : undefined;
  }
  const d = await timed(() => driver.decryptSymmetric(keyId, e.value));
  exercised('kms:Decrypt', d.ok ? undefined : d.error, 'a probe decryption');
  if (!d.ok)
    add({
      check: 'key probe',
      status: 'problem',
      detail: `decrypting the probe: ${d.error.code}: ${oneLine(d.error)}`,
      fix: fixFor(d.error, { scheme, permission: 'kms:Decrypt' }),
      ms: d.ms,
    });
  else if (!d.value.equals(probe))
    add({
      check: 'key probe',
      status: 'problem',
      detail: 'the probe decrypted to other bytes',
      fix: 'the key or driver is broken: run `keyport driver-test` against this KMS',
    });
  else
    add({
      check: 'key probe',
      status: 'ok',
      detail: `symmetric wrapper key: a probe encrypts and decrypts (${e.ms} + ${d.ms} ms)`,
      ms: e.ms + d.ms,
    });
  return 'symmetric';
}

/** no key named (the KMS holds keys): look at an existing key where the KMS can list */
async function checkKeyStoreMode(driver: Driver, c: Ctx): Promise<void> {
  const { add, exercised, scheme } = c;
  if (!driver.listKeys) {
    add({ check: 'keys', status: 'not-checked', detail: `the ${scheme} driver cannot list keys; name one with key-id= to check it` });
    return;
  }
  const t = performance.now();
  const seen: { keyId: string; kind?: string }[] = [];
  try {
    for await (const k of driver.listKeys()) {
      seen.push(k);
      if (seen.length >= 20) break;
    }
  } catch (e) {
    const ke = toKeyportError(e, scheme);
    // the AWS listing is ListAliases (for the names), then ListKeys: name the one that was denied
    const p = /not authorized to perform:? (kms:[A-Za-z]+)/.exec(ke.message)?.[1] ?? 'kms:ListKeys';
    exercised(p, ke, 'listing keys');
    const optional = ke.code === 'PERMISSION' && AWS_OPTIONAL[p];
    add({
      check: 'keys',
      status: optional ? 'warning' : 'problem',
      detail: `listing keys: ${ke.code}: ${oneLine(ke)}`,
      fix: fixFor(ke, { scheme, permission: p }),
      ms: Math.round(performance.now() - t),
    });
    return;
  }
  exercised('kms:ListAliases', undefined, 'listing keys');
  add({
    check: 'keys',
    status: 'ok',
    detail: seen.length ? `listing works (${seen.length}${seen.length >= 20 ? '+' : ''} key(s) seen)` : 'listing works (no keys yet)',
    ms: Math.round(performance.now() - t),
  });
  const first = seen[0];
  if (first) {
    const r = await timed(() => driver.keyExistsAndIsActive(first.keyId));
    exercised(
      'kms:DescribeKey',
      r.ok || r.error.code === 'KEY_DISABLED' || r.error.code === 'NOT_FOUND' ? undefined : r.error,
      `keyExistsAndIsActive(${first.keyId})`,
    );
  }
  const asym = seen.find((k) => k.kind === 'signing' || k.kind === 'encryption');
  if (asym) {
    const r = await timed(() => driver.getPublicKey(asym.keyId));
    if (r.ok || r.error.code === 'PERMISSION') exercised('kms:GetPublicKey', r.ok ? undefined : r.error, `getPublicKey(${asym.keyId})`);
  }
}
