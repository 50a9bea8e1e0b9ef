/**
 * Independent verification of a set of signed topology transactions: every hash recomputed from the bytes,
 * every signature checked against the key its `signed_by` names, and every transaction's authorization
 * checked against the namespace delegation chain (Canton's rules, FORMATS §6):
 * - a root certificate is a NamespaceDelegation whose target is the namespace key, signed by that key, that
 *   may sign namespace delegations;
 * - a delegation is authorized by a key of its namespace that may sign namespace delegations;
 * - a key authorizes mapping code C only if its own delegation may sign C;
 * - an OwnerToKeyMapping needs its member's namespace plus a signature of every signing key it lists.
 * Revocations (REMOVE) remove a delegation from the current state; a transaction is judged against the
 * delegations in force before it (input order, then serial).
 */
import { transactionHash } from './hash.js';
import { publicKeyId, publicKeyOf, verifyCantonSignature } from './keys.js';
import {
  type DelegationRestriction,
  innerTransaction,
  mappingCode,
  type SignedTopologyTransaction,
  SigningKeyUsage,
  type SigningPublicKey,
  TopologyChangeOp,
  TopologyMappingCode,
  type TopologyTransaction,
} from './messages.js';
import { describeRestriction } from './builders.js';

export interface TxReport {
  /** where it came from (file name, index) */
  source: string;
  kind: string;
  operation: 'add' | 'remove';
  serial: number;
  hash: string;
  namespace?: string;
  member?: string;
  target?: string;
  restriction?: string;
  signers: string[];
  ok: boolean;
  problems: string[];
}

export interface VerifyReport {
  ok: boolean;
  transactions: TxReport[];
  /** namespaces with a valid root certificate */
  namespaces: string[];
  /** delegations in force at the end: namespace → target fingerprint → restriction */
  delegations: { namespace: string; target: string; restriction: string; root: boolean }[];
}

function canSign(r: DelegationRestriction, isRootFlag: boolean, code: number): boolean {
  switch (r.kind) {
    case 'all':
      return true;
    case 'all-but-namespace-delegations':
      return code !== TopologyMappingCode.NAMESPACE_DELEGATION;
    case 'specific':
      return r.mappings.includes(code);
    case 'unset':
      return isRootFlag || code !== TopologyMappingCode.NAMESPACE_DELEGATION;
  }
}

interface Delegation {
  restriction: DelegationRestriction;
  isRootFlag: boolean;
  root: boolean;
  key: SigningPublicKey;
  serial: number;
}

export function verifyTransactions(
  input: { source: string; signed: SignedTopologyTransaction }[],
  extraKeys: SigningPublicKey[] = [],
): VerifyReport {
  // every signing key any input names, by fingerprint (signatures are checked against these)
  const keys = new Map<string, SigningPublicKey>();
  for (const k of extraKeys) keys.set(publicKeyId(k), k);
  const decoded: { source: string; signed: SignedTopologyTransaction; tx?: TopologyTransaction; error?: string }[] = input.map((i) => {
    try {
      const tx = innerTransaction(i.signed);
      if (tx.mapping.kind === 'namespace-delegation') keys.set(publicKeyId(tx.mapping.value.targetKey), tx.mapping.value.targetKey);
      if (tx.mapping.kind === 'owner-to-key-mapping')
        for (const pk of tx.mapping.value.publicKeys) if (pk.signing) keys.set(publicKeyId(pk.signing), pk.signing);
      return { ...i, tx };
    } catch (e) {
      return { ...i, error: (e as Error).message };
    }
  });

  // namespace → target → delegation, built as transactions are accepted
  const state = new Map<string, Map<string, Delegation>>();
  // last accepted serial per unique mapping key (namespace+target for NSD, member for OTK)
  const serials = new Map<string, number>();
  const reports: TxReport[] = [];

  const authorized = (namespace: string, fp: string, code: number) => {
    const d = state.get(namespace)?.get(fp);
    return !!d && canSign(d.restriction, d.isRootFlag, code);
  };

  // Canton applies transactions in sequence; an input set may list them in any order, so accept what can
  // be accepted until nothing changes, in input order within each pass
  const pending = decoded.map((d, i) => ({ ...d, i })).sort((a, b) => (a.tx?.serial ?? 0) - (b.tx?.serial ?? 0));
  const results = new Map<number, TxReport>();
  for (let changed = true; changed; ) {
    changed = false;
    for (const d of pending) {
      if (results.has(d.i) && results.get(d.i)!.ok) continue;
      const r = judge(d);
      const before = results.get(d.i);
      results.set(d.i, r);
      if (r.ok && !before?.ok) changed = true;
    }
  }
  for (let i = 0; i < decoded.length; i++) reports.push(results.get(i)!);

  function judge(d: (typeof pending)[number]): TxReport {
    const hash = transactionHash(d.signed.transaction).toString('hex');
    const base: TxReport = {
      source: d.source,
      kind: 'unknown',
      operation: 'add',
      serial: 0,
      hash,
      signers: d.signed.signatures.map((s) => s.signedBy),
      ok: false,
      problems: [],
    };
    if (!d.tx) return { ...base, problems: [d.error ?? 'undecodable'] };
    const tx = d.tx;
    const rep: TxReport = {
      ...base,
      kind: tx.mapping.kind,
      operation: tx.operation === TopologyChangeOp.REMOVE ? 'remove' : 'add',
      serial: tx.serial,
    };
    const problems = rep.problems;
    if (d.signed.signatures.length === 0) problems.push('no signatures');
    const hashBytes = Buffer.from(hash, 'hex');
    const valid = new Set<string>();
    for (const s of d.signed.signatures) {
      const k = keys.get(s.signedBy);
      if (!k) {
        problems.push(`signature by unknown key ${s.signedBy}`);
        continue;
      }
      const why = verifyCantonSignature(k, hashBytes, s);
      if (why) problems.push(why);
      else valid.add(s.signedBy);
    }
    if (d.signed.multiTransactionSignatures.length) problems.push('multi-transaction signatures are not checked by this verifier');
    const code = mappingCode(tx.mapping);
    if (tx.mapping.kind === 'namespace-delegation') {
      const nsd = tx.mapping.value;
      const target = publicKeyId(nsd.targetKey);
      Object.assign(rep, { namespace: nsd.namespace, target, restriction: describeRestriction(nsd.restriction) });
      if (nsd.isRootDelegation && nsd.restriction.kind !== 'unset') problems.push('is_root_delegation set together with a restriction');
      const usages = nsd.targetKey.usage.length ? nsd.targetKey.usage : [SigningKeyUsage.NAMESPACE];
      if (!usages.includes(SigningKeyUsage.NAMESPACE)) problems.push(`target key ${target} lacks the NAMESPACE usage`);
      const isRoot = target === nsd.namespace;
      if (isRoot) {
        if (!canSign(nsd.restriction, nsd.isRootDelegation, TopologyMappingCode.NAMESPACE_DELEGATION))
          problems.push('a root certificate must be able to sign namespace delegations');
        if (!d.signed.signatures.every((s) => s.signedBy === nsd.namespace)) {
          // not a root certificate: must be authorized by the namespace like any delegation
          if (![...valid].some((fp) => authorized(nsd.namespace, fp, code))) problems.push(`not authorized by namespace ${nsd.namespace}`);
        } else if (!valid.has(nsd.namespace)) problems.push('root certificate is not validly self-signed');
      } else if (![...valid].some((fp) => authorized(nsd.namespace, fp, code)))
        problems.push(`not authorized by namespace ${nsd.namespace}`);
      const key = `nsd:${nsd.namespace}:${target}`;
      const last = serials.get(key);
      if (last !== undefined && tx.serial <= last) problems.push(`serial ${tx.serial} does not follow serial ${last}`);
      rep.ok = problems.length === 0;
      if (rep.ok) {
        serials.set(key, tx.serial);
        let m = state.get(nsd.namespace);
        if (!m) state.set(nsd.namespace, (m = new Map()));
        if (tx.operation === TopologyChangeOp.REMOVE) m.delete(target);
        else
          m.set(target, {
            restriction: nsd.restriction,
            isRootFlag: nsd.isRootDelegation,
            root: isRoot,
            key: nsd.targetKey,
            serial: tx.serial,
          });
      }
      return rep;
    }
    if (tx.mapping.kind === 'owner-to-key-mapping') {
      const otk = tx.mapping.value;
      rep.member = otk.member;
      const m = /^(PAR|MED|SEQ)::(.+)::(1220[0-9a-f]{64})$/.exec(otk.member);
      if (!m) problems.push(`member '${otk.member}' is not <PAR|MED|SEQ>::id::namespace`);
      else {
        const ns = m[3]!;
        rep.namespace = ns;
        if (![...valid].some((fp) => authorized(ns, fp, code))) problems.push(`not authorized by namespace ${ns}`);
      }
      if (otk.publicKeys.length === 0 || otk.publicKeys.length > 20) problems.push('an OwnerToKeyMapping carries 1 to 20 keys');
      const ids = otk.publicKeys.map((k) => publicKeyId(publicKeyOf(k)));
      if (new Set(ids).size !== ids.length) problems.push('duplicate keys');
      if (tx.operation === TopologyChangeOp.ADD_REPLACE)
        for (const k of otk.publicKeys)
          if (k.signing && !valid.has(publicKeyId(k.signing)))
            problems.push(`signing key ${publicKeyId(k.signing)} did not sign (proof of ownership)`);
      const key = `otk:${otk.member}`;
      const last = serials.get(key);
      if (last !== undefined && tx.serial <= last) problems.push(`serial ${tx.serial} does not follow serial ${last}`);
      rep.ok = problems.length === 0;
      if (rep.ok) serials.set(key, tx.serial);
      return rep;
    }
    // other mappings: signatures only
    problems.length || valid.size || problems.push('no valid signature');
    rep.kind = `mapping-code-${code}`;
    rep.ok = problems.length === 0;
    return rep;
  }

  const namespaces = [...state.entries()].filter(([ns, m]) => m.get(ns)?.root).map(([ns]) => ns);
  const delegations = [...state.entries()].flatMap(([ns, m]) =>
    [...m.entries()].map(([t, d]) => ({ namespace: ns, target: t, restriction: describeRestriction(d.restriction), root: d.root })),
  );
  return { ok: reports.every((r) => r.ok), transactions: reports, namespaces, delegations };
}
