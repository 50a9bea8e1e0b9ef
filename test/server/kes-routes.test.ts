/**
 * Routing, listing and policy patterns as KES v0.24.0 does them: both spellings of every route (the Go mux's
 * 301 to the subtree route, the policy checked on the path the route serves), unclean paths, server-side
 * listing by prefix, and the policy semantics table with configs written for KES 0.21 and 0.24.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RemoteKeyring } from '../../src/client/remote.js';
import { loadServerConfig } from '../../src/server/config.js';
import { matchPattern, unmatchableReason } from '../../src/server/policy.js';
import { policyAllows, routePaths } from '../../src/server/routes.js';
import { cleanPath } from '../../src/server/mux.js';
import { testServer, agentFor, raw } from '../support/server.js';
import { tempDir } from '../support/tmp.js';

describe('routes as KES v0.24 serves them', async () => {
  const lister = (await import('../../src/server/identity.js')).generateApiKey();
  const t = await testServer((c) => {
    // MinIO's documented KES policy, as a MinIO server's identity has it
    c.policies.set('minio', {
      name: 'minio',
      allow: ['/v1/key/create/*', '/v1/key/generate/*', '/v1/key/decrypt/*', '/v1/key/list/*', '/v1/status', '/v1/metrics'],
      deny: [],
    });
    c.identities.set(lister.identity, 'minio');
  });
  const admin = new RemoteKeyring(t.url, { apiKey: t.admin, insecure: true });
  const ad = agentFor((await import('../../src/server/identity.js')).parseApiKey(t.admin));
  const li = agentFor(lister);
  for (const n of ['minio-a', 'minio-b', 'mint', 'other']) await admin.create(n);

  test('a subtree route spelled without its slash is answered 301 to the route, query kept, before any policy check', async () => {
    const r = await raw(t.url, li, 'GET', '/v1/key/list');
    assert.equal(r.status, 301);
    assert.equal(r.headers['location'], '/v1/key/list/');
    assert.match(r.body, /Moved Permanently/);
    // the redirected path is the one the policy allows: the identity can list
    const f = await raw(t.url, li, 'GET', '/v1/key/list/');
    assert.equal(f.status, 200, f.body);
    assert.deepEqual(JSON.parse(f.body).names, ['minio-a', 'minio-b', 'mint', 'other']);
    const q = await raw(t.url, li, 'GET', '/v1/key/list?limit=1');
    assert.equal(q.headers['location'], '/v1/key/list/?limit=1');
    // every subtree route, every method: 301 (no body for PUT/DELETE); exact routes with a slash: 404
    for (const p of routePaths()) {
      if (p.endsWith('/')) {
        const x = await raw(t.url, ad, 'DELETE', p.slice(0, -1));
        assert.equal(x.status, 301, p);
        assert.equal(x.headers['location'], p);
        assert.equal(x.body, '');
      } else {
        assert.equal((await raw(t.url, ad, 'GET', `${p}/`)).status, 404, `${p}/`);
      }
    }
    // a stranger is redirected too (the mux answers before authentication), then refused on the route
    assert.equal((await raw(t.url, agentFor(t.stranger), 'GET', '/v1/key/list')).status, 301);
    assert.equal((await raw(t.url, agentFor(t.stranger), 'GET', '/v1/key/list/')).status, 403);
  });

  test('unclean paths are redirected to their clean form, so a policy never sees a dotted path', async () => {
    const r = await raw(t.url, li, 'GET', '/v1/key/describe/..%2F..%2Fstatus');
    assert.equal(r.status, 301);
    assert.equal(r.headers['location'], '/v1/status');
    assert.equal((await raw(t.url, li, 'GET', '//v1/status')).headers['location'], '/v1/status');
    assert.equal((await raw(t.url, li, 'GET', '/v1/key/list/a//m')).headers['location'], '/v1/key/list/a/m');
    assert.equal(cleanPath('/a/b/../c/./d/'), '/a/c/d/');
    assert.equal(cleanPath('/../x'), '/x');
  });

  test("server listing is KES's prefix: 'min' lists minio-*, 'min*' lists nothing, '*' and '' list all", async () => {
    const names = async (p: string) => {
      const r = await raw(t.url, ad, 'GET', `/v1/key/list/${p}`);
      assert.equal(r.status, 200, `${p}: ${r.body}`);
      return JSON.parse(r.body).names as string[];
    };
    assert.deepEqual(await names('min'), ['minio-a', 'minio-b', 'mint']);
    assert.deepEqual(await names('minio'), ['minio-a', 'minio-b']);
    assert.deepEqual(await names('min*'), []);
    assert.deepEqual(await names('*'), ['minio-a', 'minio-b', 'mint', 'other']);
    assert.deepEqual(await names(''), ['minio-a', 'minio-b', 'mint', 'other']);
    for (const bad of ['min-', '-min', 'a*b', 'm?', '_'])
      assert.equal((await raw(t.url, ad, 'GET', `/v1/key/list/${encodeURIComponent(bad)}`)).status, 400, bad);
    // policies and identities: the trailing '*' is dropped, the rest is a prefix
    const pol = await raw(t.url, ad, 'GET', '/v1/policy/list/min*');
    assert.deepEqual(JSON.parse(pol.body).names, ['minio']);
    // keyport's own client keeps globs: the server is asked for the literal prefix, the glob applied locally
    assert.deepEqual((await admin.list('min*')).names, ['minio-a', 'minio-b', 'mint']);
    assert.deepEqual((await admin.list('minio-?')).names, ['minio-a', 'minio-b']);
    assert.deepEqual((await admin.list('*t*')).names, ['mint', 'other']);
  });

  test('kes metric: one series per family except the code-labelled request counters; CPUs as KES counts them', async () => {
    const r = await raw(t.url, ad, 'GET', '/v1/metrics');
    const series = new Map<string, number>();
    for (const line of r.body.split('\n')) {
      if (!line || line.startsWith('#')) continue;
      const name = /^([a-z_]+?)(?:_bucket|_sum|_count)?[{ ]/.exec(line)![1]!;
      if (line.includes('_bucket{') || /_(sum|count) /.test(line)) continue;
      series.set(name, (series.get(name) ?? 0) + 1);
    }
    for (const [name, n] of series)
      if (!/^kes_http_request_(success|error|failure)$/.test(name)) assert.equal(n, 1, `${name} has ${n} series`);
    assert.ok(
      [...series.keys()].every((n) => n.startsWith('kes_')),
      [...series.keys()].join(' '),
    );
    const os = await import('node:os');
    assert.match(r.body, new RegExp(`kes_system_num_cpu_used ${os.availableParallelism()}\\n`));
    const st = JSON.parse((await raw(t.url, ad, 'GET', '/v1/status')).body);
    assert.equal(st.num_cpu_used, os.availableParallelism());
  });
});

describe('policy patterns: KES v0.24 semantics, unmatchable patterns refused at start-up', () => {
  const routes = routePaths();
  test('the semantics table (kms-go/kes Policy.Verify)', () => {
    const table: [string, string, boolean][] = [
      ['/v1/key/describe/app*', '/v1/key/describe/app-prod', true],
      ['/v1/key/describe/app*', '/v1/key/describe/ap', false],
      ['/v1/key/describe/*', '/v1/key/describe/x', true],
      ['/v1/key/*', '/v1/key/decrypt/x', true], // a prefix crosses '/', unlike path.Match
      ['/v1/key/describe/app', '/v1/key/describe/app', true],
      ['/v1/key/describe/app', '/v1/key/describe/app-2', false],
      ['/v1/key/describe/*-prod', '/v1/key/describe/app-prod', false], // literal under v0.24
      ['/v1/status', '/v1/status', true],
      ['', '/v1/status', false],
      ['*', '/anything', true],
    ];
    for (const [p, path, want] of table) assert.equal(matchPattern(p, path), want, `${p} ~ ${path}`);
    const cfg = {
      admin: 'a'.repeat(64),
      identities: new Map([['b'.repeat(64), 'p']]),
      policies: new Map([['p', { name: 'p', allow: ['/v1/key/*'], deny: ['/v1/key/delete/*'] }]]),
    } as never;
    assert.equal(policyAllows(cfg, 'b'.repeat(64), '/v1/key/create/x'), true);
    assert.equal(policyAllows(cfg, 'b'.repeat(64), '/v1/key/delete/x'), false); // deny wins
    assert.equal(policyAllows(cfg, 'c'.repeat(64), '/v1/key/create/x'), false);
  });

  test('which patterns can match a served request', () => {
    for (const ok of [
      '/v1/key/create/*',
      '/v1/key/create/my-app*',
      '/v1/key/describe/app-prod',
      '/v1/key/list/*',
      '/v1/key/list/min*',
      '/v1/status',
      '/v1/*',
      '/v1/key/gen*',
      '*',
      '/v1/identity/describe/' + 'f'.repeat(64),
    ])
      assert.equal(unmatchableReason(ok, routes), undefined, ok);
    for (const bad of [
      '',
      '/v1/key/describe/*-prod',
      '/v1/key/?ncrypt/x',
      '/v1/key/[a-z]*',
      '/v1/key/decrpyt/*',
      '/v1/key/describe',
      '/v1/status/',
      '/v1/key/describe/bad.name',
      '/v2/*',
    ])
      assert.ok(unmatchableReason(bad, routes), `${JSON.stringify(bad)} should be unmatchable`);
  });

  const dir = tempDir();
  writeFileSync(join(dir, 'k.pem'), 'x');
  writeFileSync(join(dir, 'c.pem'), 'x');
  const config = (name: string, policy: string) => {
    const f = join(dir, name);
    writeFileSync(
      f,
      `address: 127.0.0.1:7373\nadmin:\n  identity: ${'a'.repeat(64)}\ntls:\n  key: k.pem\n  cert: c.pem\nkeystore:\n  fs:\n    path: keys\npolicy:\n${policy}`,
    );
    return f;
  };

  test('a config written for KES 0.21 with path.Match globs is refused, one line naming the pattern', () => {
    const f = config(
      'kes-0.21.yml',
      `  my-app:\n    allow:\n    - /v1/key/generate/my-app-*\n    - /v1/key/decrypt/my-app-*\n    deny:\n    - /v1/key/decrypt/*-prod\n    identities:\n    - ${'b'.repeat(64)}\n`,
    );
    assert.throws(
      () => loadServerConfig(f),
      (e: Error) =>
        /policy 'my-app': deny pattern '\/v1\/key\/decrypt\/\*-prod' cannot match any request: it is a path\.Match glob/.test(e.message) &&
        !e.message.includes('\n'),
    );
    // the same intent written for KES 0.24: accepted
    const g = config(
      'kes-0.24.yml',
      `  my-app:\n    allow:\n    - /v1/key/generate/my-app-*\n    - /v1/key/decrypt/my-app-*\n    deny:\n    - /v1/key/decrypt/my-app-prod*\n    identities:\n    - ${'b'.repeat(64)}\n`,
    );
    const c = loadServerConfig(g);
    assert.deepEqual(c.policies.get('my-app')!.deny, ['/v1/key/decrypt/my-app-prod*']);
    assert.deepEqual(c.notices, []);
  });

  test("MinIO's documented policy (with KES ≤ 0.22's /v1/key/bulk/decrypt) loads with a notice; a typo'd deny does not", () => {
    const f = config(
      'minio.yml',
      `  minio:\n    allow:\n    - /v1/key/create/*\n    - /v1/key/generate/*\n    - /v1/key/decrypt/*\n    - /v1/key/bulk/decrypt\n    - /v1/key/list/*\n    - /v1/status\n    - /v1/metrics\n    - /v1/log/audit\n    - /v1/log/error\n    identities:\n    - ${'b'.repeat(64)}\n`,
    );
    const c = loadServerConfig(f);
    assert.equal(c.notices?.length, 1);
    assert.match(c.notices![0]!, /'\/v1\/key\/bulk\/decrypt' names an API KES v0.24 no longer has/);
    const g = config('typo.yml', `  p:\n    allow:\n    - /v1/key/*\n    deny:\n    - /v1/key/delet/*\n`);
    assert.throws(() => loadServerConfig(g), /deny pattern '\/v1\/key\/delet\/\*' cannot match any request: no API path/);
  });
});
