/**
 * `keyport doctor` for the Canton nodes of a store: each node key in a KMS is checked the way the KMS
 * doctor checks a key (exists and enabled, its public key, a probe signature or decryption), so the
 * permissions Canton needs (DescribeKey, GetPublicKey, Sign, Decrypt) are exercised on the node's own keys.
 * Nothing is created: CreateKey and TagResource are reported as needed for new keys (rotation), or as not
 * needed when every key is registered by ARN (possibly another account).
 */
import { oneLine } from '../../errors.js';
import { doctorKms, type DoctorCheck } from '../../kms/doctor.js';
import { openKeyring, type OpenOptions } from '../../keys/open.js';
import { listNodes, loadNode } from './registry.js';
import { locateNodeKeys } from './canton-config.js';
import type { Target } from '../../keys/target.js';

const RANK = { problem: 4, warning: 3, ok: 2, 'not-checked': 1, info: 0 } as const;

/** `opts`: the connections the store doctor gets (--kms / --wrapper, KEYPORT_KMS) */
export async function doctorNodes(target: string | Target, opts: Pick<OpenOptions, 'kms'> = {}): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  let kr;
  try {
    // a doctor creates nothing: a missing store (or a KMS without a catalog) has no nodes to look at
    // and writes nothing: a clear store its YAML wants sealed is looked at as it is (the store doctor says so)
    kr = await openKeyring(target, { ...(opts.kms ? { kms: opts.kms } : {}), create: false, readOnly: true });
  } catch {
    return []; // the store doctor reports why the store cannot be opened
  }
  try {
    const names = await listNodes(kr).catch(() => [] as string[]);
    const perms = new Map<string, DoctorCheck>();
    let allByArn = true;
    let anyAws = false;
    for (const name of names) {
      let keys;
      try {
        keys = await locateNodeKeys(kr, await loadNode(kr, name));
      } catch (e) {
        checks.push({
          check: `node ${name}`,
          status: 'problem',
          detail: oneLine(e),
          fix: 'keyport node show NAME; restore the node record',
        });
        continue;
      }
      for (const k of keys) {
        if (!k.kms || !k.keyId) continue;
        if (k.kms.scheme === 'awskms') {
          anyAws = true;
          if (!(k.origin === 'registered' && k.keyId.startsWith('arn:'))) allByArn = false;
        }
        // the configured connection (credentials included, never printed) naming this key
        if (!k.connection) {
          checks.push({
            check: `node ${name} ${k.role} key`,
            status: 'not-checked',
            detail: `${k.key} v${k.version} (${k.kmsUri} key ${k.keyId}): no connection to ${k.kms} is configured`,
            fix: `give it with --kms '${k.kms.scheme}:…', KEYPORT_KMS or kms: in the store YAML (docs/connections.md)`,
          });
          continue;
        }
        const r = await doctorKms(k.connection.withKey(k.keyId));
        const key = r.checks.filter((c) => c.check === 'key' || c.check === 'key probe');
        const worst = key.reduce<DoctorCheck | undefined>((a, c) => (!a || RANK[c.status] > RANK[a.status] ? c : a), undefined);
        checks.push({
          check: `node ${name} ${k.role} key`,
          status: worst?.status ?? 'not-checked',
          detail: `${k.key} v${k.version} (${k.kmsUri} key ${k.keyId}): ${key.map((c) => c.detail).join('; ') || 'not checked'}`,
          ...(worst?.fix ? { fix: worst.fix } : {}),
        });
        for (const c of r.checks.filter((x) => x.check.startsWith('permission kms:'))) {
          if (/^permission kms:(CreateKey|TagResource)/.test(c.check)) continue;
          const cur = perms.get(c.check);
          // a permission is shown once: a denial anywhere wins, then a success anywhere
          if (!cur || RANK[c.status] > RANK[cur.status]) perms.set(c.check, c);
        }
      }
    }
    for (const c of [...perms.values()].sort((a, b) => a.check.localeCompare(b.check))) checks.push({ ...c, check: `node ${c.check}` });
    if (anyAws)
      checks.push(
        allByArn
          ? {
              check: 'node permission kms:CreateKey, kms:TagResource',
              status: 'info',
              detail: 'not needed: every node key is registered by ARN (possibly another account); keyport and Canton create nothing',
            }
          : {
              check: 'node permission kms:CreateKey, kms:TagResource',
              status: 'not-checked',
              detail: 'needed for new keys (Canton key rotation, keyport node rotate); not exercised here, where nothing is created',
            },
      );
  } finally {
    await kr.close().catch(() => undefined);
  }
  return checks;
}
