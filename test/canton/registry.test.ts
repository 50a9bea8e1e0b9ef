import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openKeyring } from '../../src/keys/open.js';
import { deleteNode, findNode, listNodes, loadNode, saveNode } from '../../src/canton/node/registry.js';
import type { NodeRecord } from '../../src/canton/node/types.js';
import { isKeyportError } from '../../src/errors.js';
import { tempDir } from '../support/tmp.js';

const dir = tempDir();

test('node records live in the keyring store: save, load, list, refuse duplicates and damage, delete', async () => {
  for (const uri of [`sqlite:${join(dir, 'n.db')}`, `fs:${join(dir, 'fsn')}`]) {
    const kr = await openKeyring(uri);
    try {
      const n: NodeRecord = {
        v: 1,
        name: 'p1',
        profile: 'participant',
        identifier: 'p1',
        createdAt: new Date().toISOString(),
        namespace: `1220${'ab'.repeat(32)}`,
        manualInit: false,
        keys: [
          {
            role: 'namespace',
            key: 'p1-namespace',
            version: 1,
            fingerprint: `1220${'ab'.repeat(32)}`,
            type: 'ec-p256',
            usage: ['namespace'],
            origin: 'generated',
          },
        ],
        topology: [],
      };
      assert.deepEqual(await listNodes(kr), []);
      await saveNode(kr, n, { create: true });
      await saveNode(kr, { ...n, name: 'm1', profile: 'mediator', identifier: 'm1' }, { create: true });
      await assert.rejects(saveNode(kr, n, { create: true }), (e) => isKeyportError(e, 'EXISTS'));
      assert.deepEqual(await loadNode(kr, 'p1'), n);
      assert.deepEqual(await listNodes(kr), ['m1', 'p1']);
      assert.equal(await findNode(kr, 'nope'), undefined);
      await assert.rejects(loadNode(kr, 'nope'), (e) => isKeyportError(e, 'NOT_FOUND'));
      await kr.store.setMeta('canton.node.bad', '{"v":1}');
      await assert.rejects(loadNode(kr, 'bad'), (e) => isKeyportError(e, 'INVALID_INPUT'));
      await deleteNode(kr, 'm1');
      assert.deepEqual(await listNodes(kr), ['p1']);
    } finally {
      await kr.close();
    }
  }
});
