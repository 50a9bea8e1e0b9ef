/**
 * Where node records live: in the keyring's own store, as store settings (`canton.node.<NAME>` and the index
 * `canton.nodes`), so a node travels with its keys and every replica of a shared store sees it.
 */
import { z } from 'zod';
import { err } from '../../errors.js';
import { KEY_TYPES } from '../../crypto/keytypes.js';
import { checkName } from '../../keys/names.js';
import { KEY_USAGES, type RecordStore } from '../../store/types.js';
import { CANTON_KEY_ROLES } from '../roles.js';
import { NODE_PROFILES, type NodeRecord } from './types.js';

/** anything with the store behind a keyring (StoreKeyring) */
export interface NodeHost {
  readonly store: RecordStore;
}

const INDEX = 'canton.nodes';
const metaKey = (name: string) => `canton.node.${name}`;

const NodeRecordSchema = z.object({
  v: z.literal(1),
  name: z.string(),
  profile: z.enum(NODE_PROFILES),
  identifier: z.string(),
  createdAt: z.string(),
  namespace: z.string().regex(/^1220[0-9a-f]{64}$/),
  namespaceOf: z.string().optional(),
  manualInit: z.boolean(),
  awaitingRoot: z.boolean().optional(),
  keys: z.array(
    z.object({
      role: z.enum(CANTON_KEY_ROLES),
      key: z.string(),
      version: z.number().int().positive(),
      fingerprint: z.string(),
      type: z.enum(KEY_TYPES),
      usage: z.array(z.enum(KEY_USAGES)),
      origin: z.enum(['generated', 'registered', 'imported']),
    }),
  ),
  topology: z.array(z.object({ name: z.string(), cert: z.string() })),
});

async function readIndex(host: NodeHost): Promise<string[]> {
  const raw = await host.store.getMeta(INDEX);
  if (!raw) return [];
  try {
    const v = JSON.parse(raw) as unknown;
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v;
  } catch {
    /* fall through */
  }
  throw err('INVALID_INPUT', `store ${host.store.uri} has a damaged node index`);
}

export async function listNodes(host: NodeHost): Promise<string[]> {
  return (await readIndex(host)).sort();
}

export async function findNode(host: NodeHost, name: string): Promise<NodeRecord | undefined> {
  checkName(name);
  const raw = await host.store.getMeta(metaKey(name));
  if (!raw) return undefined;
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch {
    throw err('INVALID_INPUT', `node '${name}': damaged record`);
  }
  const r = NodeRecordSchema.safeParse(doc);
  if (!r.success) throw err('INVALID_INPUT', `node '${name}': damaged record (${r.error.issues[0]!.path.join('.')})`);
  return r.data as NodeRecord;
}

export async function loadNode(host: NodeHost, name: string): Promise<NodeRecord> {
  const n = await findNode(host, name);
  if (!n) throw err('NOT_FOUND', `node '${name}' not found in ${host.store.uri}: create it with 'keyport node init ${name}'`);
  return n;
}

/** create (`create: true` fails with EXISTS when taken) or replace a node record */
export async function saveNode(host: NodeHost, node: NodeRecord, opts: { create?: boolean } = {}): Promise<void> {
  checkName(node.name);
  const parsed = NodeRecordSchema.safeParse(node);
  if (!parsed.success) throw err('INTERNAL', `node '${node.name}': invalid record (${parsed.error.issues[0]!.path.join('.')})`);
  const exists = (await host.store.getMeta(metaKey(node.name))) !== undefined;
  if (opts.create && exists) throw err('EXISTS', `node '${node.name}' already exists`);
  await host.store.setMeta(metaKey(node.name), JSON.stringify(node));
  const idx = await readIndex(host);
  if (!idx.includes(node.name)) await host.store.setMeta(INDEX, JSON.stringify([...idx, node.name].sort()));
}

export async function deleteNode(host: NodeHost, name: string): Promise<void> {
  await loadNode(host, name);
  await host.store.setMeta(metaKey(name), undefined);
  await host.store.setMeta(INDEX, JSON.stringify((await readIndex(host)).filter((n) => n !== name)));
}
