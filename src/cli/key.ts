/** `keyport key …`: create, import, export, ls, describe, public, rm, register, rotate, sign, verify, encrypt, decrypt, generate, hmac. */
import { type Command, Option } from 'commander';
import { err } from '../errors.js';
import { KEY_TYPES } from '../crypto/keytypes.js';
import { KEY_USAGES, type KeyUsage } from '../store/types.js';
import type { KeyInfo } from '../keys/types.js';
import { humanFingerprint, printJson, printTable } from './output.js';
import { formatAge } from '../config/duration.js';
import { confirm, emitJson, readInput, SMALL_INPUT, storeOptions, withKeyring, writeOutput, type StoreOpts } from './common.js';

interface KeyOpts extends StoreOpts {
  type?: string;
  purpose?: 'signing' | 'encryption' | 'symmetric';
  usage?: string;
  file?: string;
  in?: string;
  out?: string;
  sig?: string;
  pem?: boolean;
  context?: string;
  format?: 'der' | 'raw';
  keyVersion?: string;
  strict?: boolean;
  keyId?: string;
}

const usageList = (s?: string): KeyUsage[] | undefined => {
  if (!s) return undefined;
  const l = s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
  for (const u of l)
    if (!(KEY_USAGES as readonly string[]).includes(u)) throw err('USAGE', `unknown usage '${u}': use ${KEY_USAGES.join(', ')}`);
  return l as KeyUsage[];
};

const versionOf = (s?: string) => {
  if (s === undefined) return undefined;
  if (!/^[1-9]\d*$/.test(s)) throw err('USAGE', `--key-version must be a positive number, got '${s}'`);
  return Number(s);
};

function showInfo(k: KeyInfo, json?: boolean) {
  if (json) return printJson(k);
  const rows: [string, string][] = [
    ['Name', k.name],
    ['Type', k.type],
    ['Purpose', k.purpose],
    ['Usage', k.usage.join(', ')],
    ['State', k.state],
    ['Fingerprint', humanFingerprint(k.fingerprint)],
    ['Version', `${k.version} (${k.versions} in all)`],
    ['Protection', k.protection],
    ['Created', `${k.createdAt} by ${k.createdBy}`],
  ];
  for (const [a, b] of rows) process.stdout.write(`${a.padEnd(12)} ${b}\n`);
}

/** seconds since the newest version was made: a key's age for rotation (`doctor --max-age`) */
const ageSeconds = (iso: string, now = Date.now()) => Math.max(0, Math.floor((now - Date.parse(iso)) / 1000));

const typeOpt = () => new Option('-t, --type <type>', 'key type').choices(KEY_TYPES as unknown as string[]);
const purposeOpt = () =>
  new Option('--purpose <purpose>', 'what the key is for (default per type: rsa → encryption, ec/ed25519 → signing)').choices([
    'signing',
    'encryption',
    'symmetric',
  ]);
const usageOpt = () => new Option('--usage <list>', `signing-key usage restriction, comma separated: ${KEY_USAGES.join(', ')}`);

/** does --store name a KMS (external mode: a URI, or a YAML with external.kms or a KMS store)? */
async function isKmsTarget(o: StoreOpts): Promise<boolean> {
  const t = o.store ?? process.env.KEYPORT_STORE;
  if (!t) return false;
  const { isYamlPath, loadStoreConfig } = await import('../keys/open.js');
  const { parseTarget } = await import('../keys/target.js');
  try {
    if (!isYamlPath(t)) return parseTarget(t).kind === 'kms';
    const c = loadStoreConfig(t);
    return c.external !== undefined || parseTarget(c.store).kind === 'kms';
  } catch {
    return false; // opening says what is wrong with it
  }
}

/** what every command that only reads passes: its store is opened without writing anything (common.ts OpenAccess) */
const READ = { readOnly: true } as const;

export function register(program: Command): void {
  const key = program.command('key').description('create, use and manage keys in a store, a KMS or a server');

  storeOptions(key.command('create <name>').description('create a key (default type aes256)'))
    .addOption(typeOpt().default('aes256'))
    .addOption(purposeOpt())
    .addOption(usageOpt())
    .action(async (name: string, o: KeyOpts) => {
      // one of the three key commands that may create the store (every other one needs it there)
      const k = await withKeyring(o, (kr) => kr.create(name, { type: o.type as never, purpose: o.purpose, usage: usageList(o.usage) }), {
        create: true,
      });
      if (o.json) printJson(k);
      else process.stdout.write(`created ${k.type} key '${k.name}' ${humanFingerprint(k.fingerprint)}\n`);
    });

  storeOptions(key.command('import <name>').description('import key material: PKCS#8 DER/PEM, or 32 raw bytes for aes256'))
    .requiredOption('-f, --file <file>', "key file, or '-' for stdin")
    .addOption(typeOpt())
    .addOption(purposeOpt())
    .addOption(usageOpt())
    .action(async (name: string, o: KeyOpts) => {
      const material = readInput(o.file!, 'key', SMALL_INPUT);
      const k = await withKeyring(
        o,
        (kr) => kr.import(name, material, { type: o.type as never, purpose: o.purpose, usage: usageList(o.usage) }),
        { create: true },
      );
      material.fill(0);
      if (o.json) printJson(k);
      else process.stdout.write(`imported ${k.type} key '${k.name}' ${humanFingerprint(k.fingerprint)}\n`);
    });

  storeOptions(
    key
      .command('export <name>')
      .description('export the newest key material (PKCS#8 DER, or 32 raw bytes for aes256), where the store allows it'),
  )
    .option('--pem', 'PEM (base64 for aes256)')
    .option('--key-version <n>', 'export this version of the key (default newest)')
    .option('-o, --out <file>', 'write to a file (0600) instead of stdout')
    .action(async (name: string, o: KeyOpts) => {
      if (o.json && o.pem) throw err('USAGE', '--pem and --json exclude each other: --json gives the key base64-encoded');
      const all = await withKeyring(o, (kr) => kr.export(name), READ);
      const want = versionOf(o.keyVersion);
      const k = want === undefined ? all[all.length - 1]! : all.find((x) => x.version === want);
      if (!k) throw err('NOT_FOUND', `key '${name}' has no version ${want}`);
      const { toPem } = await import('../crypto/keys.js');
      const format = k.type === 'aes256' ? 'raw' : 'pkcs8-der';
      if (o.json) emitJson(o, k.secret, 'key', { name, type: k.type, version: k.version, format }, { secret: true });
      else if (o.pem)
        writeOutput(o.out, k.type === 'aes256' ? k.secret.toString('base64') + '\n' : toPem(k.secret, 'PRIVATE KEY'), { secret: true });
      else writeOutput(o.out, k.secret, { secret: true, binary: true, pem: true });
      for (const x of all) x.secret.fill(0);
    });

  storeOptions(key.command('ls [pattern]').description('list keys whose names match a glob (*, ?, […])')).action(
    async (pattern: string | undefined, o: KeyOpts) => {
      const infos = await withKeyring(
        o,
        async (kr) => {
          const out: KeyInfo[] = [];
          let after: string | undefined;
          for (;;) {
            const page = await kr.list(pattern, { after, limit: 1000 });
            for (const n of page.names) out.push(await kr.describe(n));
            if (!page.next) return out;
            after = page.next;
          }
        },
        READ,
      );
      if (o.json)
        printJson(
          infos.map((k) => ({
            name: k.name,
            type: k.type,
            fingerprint: k.fingerprint,
            purpose: k.purpose,
            usage: k.usage,
            state: k.state,
            version: k.version,
            protection: k.protection,
            createdAt: k.createdAt,
            createdBy: k.createdBy,
            versionCreatedAt: k.versionCreatedAt,
            ageSeconds: ageSeconds(k.versionCreatedAt ?? k.createdAt),
          })),
        );
      else
        printTable(
          infos.map((k) => ({
            name: k.name,
            type: k.type,
            purpose: k.purpose,
            version: k.version,
            protection: k.protection,
            age: formatAge(ageSeconds(k.versionCreatedAt ?? k.createdAt) * 1000),
            fingerprint: humanFingerprint(k.fingerprint),
          })),
          ['name', 'type', 'purpose', 'version', 'protection', 'age', 'fingerprint'],
        );
    },
  );

  storeOptions(key.command('describe <name>').description('show a key: type, purpose, usage, versions, fingerprint')).action(
    async (name: string, o: KeyOpts) => {
      showInfo(await withKeyring(o, (kr) => kr.describe(name), READ), o.json);
    },
  );

  storeOptions(
    key
      .command('versions <name>')
      .description('list every version of a key: number, created, fingerprint, protection (the newest is used for new operations)'),
  ).action(async (name: string, o: KeyOpts) => {
    const vs = await withKeyring(o, (kr) => kr.versions(name), READ);
    if (o.json) printJson(vs);
    else
      printTable(
        vs.map((v) => ({
          version: `${v.version}${v.current ? ' (current)' : ''}`,
          created: v.createdAt,
          protection: v.protection,
          fingerprint: humanFingerprint(v.fingerprint),
        })),
        ['version', 'created', 'protection', 'fingerprint'],
      );
  });

  storeOptions(key.command('public <name>').description('the SPKI public key (DER, or PEM with --pem)'))
    .option('--pem', 'PEM output')
    .option('--key-version <n>', 'this version of the key (default newest)')
    .option('-o, --out <file>', 'write to a file')
    .action(async (name: string, o: KeyOpts) => {
      const version = versionOf(o.keyVersion);
      const spki = await withKeyring(o, (kr) => kr.publicKey(name, version), READ);
      const { toPem } = await import('../crypto/keys.js');
      if (o.json) emitJson(o, spki, 'publicKey', { name, ...(version ? { version } : {}), pem: toPem(spki, 'PUBLIC KEY') });
      else if (o.pem) writeOutput(o.out, toPem(spki, 'PUBLIC KEY'));
      else writeOutput(o.out, spki, { binary: true, pem: true });
    });

  storeOptions(key.command('rm <name>').description('delete a key (keys keyport generated in a KMS are scheduled for deletion there)'))
    .option('-y, --yes', 'do not ask for confirmation (asked only on a terminal)')
    .action(async (name: string, o: KeyOpts) => {
      await confirm(`delete key '${name}' and every version of it?`, o.yes, 'nothing deleted');
      await withKeyring(o, (kr) => kr.delete(name));
      if (o.json) printJson({ name, deleted: true });
      else process.stdout.write(`deleted key '${name}'\n`);
    });

  storeOptions(
    key.command('register <name>').description('adopt a key that already exists in a KMS (by id, ARN, alias or label)'),
    'KMS URI (external mode) or YAML file',
  )
    .requiredOption('--key-id <id>', 'KMS key id, ARN, alias/NAME, or label')
    .addOption(usageOpt())
    .addOption(purposeOpt())
    .addOption(
      new Option('-t, --type <type>', 'the key type the KMS key must be (checked, like its spec and usage)').choices(
        KEY_TYPES as unknown as string[],
      ),
    )
    .action(async (name: string, o: KeyOpts) => {
      // the third key command that may create the store: a KMS's catalog, never a store of another kind
      // (register into a sqlite: or fs: store is refused, and must not leave an empty one behind: a missing
      // one would be a clear store, which the keyring refuses, so it is refused the same way, as a usage error)
      const kms = await isKmsTarget(o);
      const { isStoreMissing } = await import('../store/missing.js');
      const k = await withKeyring(
        o,
        (kr) => kr.register(name, o.keyId!, { usage: usageList(o.usage), purpose: o.purpose, type: o.type as never }),
        { create: kms },
      ).catch((e: unknown) => {
        if (!kms && isStoreMissing(e))
          throw err(
            'USAGE',
            'register needs a KMS store (e.g. --store awskms:region=…): this store does not exist and would hold its own keys',
          );
        throw e;
      });
      if (o.json) printJson(k);
      else process.stdout.write(`registered ${k.type} key '${k.name}' ${humanFingerprint(k.fingerprint)}\n`);
    });

  storeOptions(key.command('rotate <name>').description('add a new version; old versions stay usable for decrypt and verify'))
    .option('--to-key-id <id>', 'the new version is this existing KMS key (id, ARN, alias/NAME or label), checked against the key')
    .action(async (name: string, o: KeyOpts & { toKeyId?: string }) => {
      const k = await withKeyring(o, (kr) => kr.rotate(name, o.toKeyId === undefined ? {} : { toKeyId: o.toKeyId }));
      if (o.json) printJson(k);
      else process.stdout.write(`rotated key '${k.name}' to version ${k.version} ${humanFingerprint(k.fingerprint)}\n`);
    });

  storeOptions(key.command('sign <name>').description('sign a file (ECDSA: DER over SHA-256/384 of the input; Ed25519; RSA-PSS-SHA256)'))
    .option('-i, --in <file>', "input file, '-' for stdin", '-')
    .option('-o, --out <file>', "signature file, '-' for stdout", '-')
    .addOption(new Option('--format <f>', 'ECDSA signature encoding').choices(['der', 'raw']).default('der'))
    .addOption(
      new Option('--usage <usage>', 'what the signature is for (checked against the key)').choices(KEY_USAGES as unknown as string[]),
    )
    .option('--key-version <n>', 'sign with this version of the key (default newest)')
    .action(async (name: string, o: KeyOpts) => {
      const data = readInput(o.in!, 'input');
      const sig = await withKeyring(
        o,
        (kr) => kr.sign(name, data, { format: o.format, usage: o.usage as KeyUsage | undefined, version: versionOf(o.keyVersion) }),
        READ,
      );
      if (o.json) emitJson(o, sig, 'signature', { name, format: o.format });
      else writeOutput(o.out, sig, { binary: true });
    });

  storeOptions(key.command('verify <name>').description('verify a signature (exit 0 valid, 1 invalid)'))
    .option('-i, --in <file>', "signed data, '-' for stdin", '-')
    .requiredOption('--sig <file>', 'signature file')
    .addOption(new Option('--format <f>', 'ECDSA signature encoding').choices(['der', 'raw']).default('der'))
    .option('--key-version <n>', 'verify against this version of the key only')
    .option('--strict', 'ECDSA: also reject a high-S signature (keyport only makes low-S ones; another signer may not)')
    .action(async (name: string, o: KeyOpts) => {
      const data = readInput(o.in!, 'input');
      const sig = readInput(o.sig!, 'signature', SMALL_INPUT);
      const ok = await withKeyring(
        o,
        (kr) => kr.verify(name, data, sig, { format: o.format, version: versionOf(o.keyVersion), strict: o.strict }),
        READ,
      );
      if (o.json) printJson({ name, valid: ok });
      else process.stdout.write(ok ? 'signature valid\n' : '');
      if (!ok) throw err('VERIFY_FAILED', `signature does not verify with key '${name}'`);
    });

  for (const op of ['encrypt', 'decrypt'] as const) {
    storeOptions(
      key
        .command(`${op} <name>`)
        .description(
          op === 'encrypt'
            ? 'encrypt a file (aes256: KES ciphertext format; RSA: OAEP-SHA256; ec-p256: ECIES)'
            : 'decrypt a file made by encrypt (or by KES)',
        ),
    )
      .option('-i, --in <file>', "input file, '-' for stdin", '-')
      .option('-o, --out <file>', "output file, '-' for stdout", '-')
      .option('-c, --context <text>', 'associated data that must match on decrypt')
      .action(async (name: string, o: KeyOpts) => {
        const data = readInput(o.in!, 'input');
        const ctx = o.context === undefined ? undefined : Buffer.from(o.context);
        const out = await withKeyring(o, (kr) => (op === 'encrypt' ? kr.encrypt(name, data, ctx) : kr.decrypt(name, data, ctx)), READ);
        if (o.json) emitJson(o, out, op === 'encrypt' ? 'ciphertext' : 'plaintext', { name }, { secret: op === 'decrypt' });
        else writeOutput(o.out, out, { binary: true, secret: op === 'decrypt' });
      });
  }

  storeOptions(key.command('generate <name>').description('a new 256-bit data key and its ciphertext under an aes256 key (KES generate)'))
    .option('-c, --context <text>', 'associated data')
    .action(async (name: string, o: KeyOpts) => {
      const dk = await withKeyring(o, (kr) => kr.generate(name, o.context === undefined ? undefined : Buffer.from(o.context)), READ);
      printJson({ plaintext: dk.plaintext.toString('base64'), ciphertext: dk.ciphertext.toString('base64') });
    });

  storeOptions(key.command('hmac <name>').description('HMAC-SHA256 of a file under an aes256 key (hex)'))
    .option('-i, --in <file>', "input file, '-' for stdin", '-')
    .action(async (name: string, o: KeyOpts) => {
      const mac = await withKeyring(o, (kr) => kr.hmac(name, readInput(o.in!, 'input')), READ);
      if (o.json) printJson({ name, hmac: mac.toString('hex') });
      else process.stdout.write(mac.toString('hex') + '\n');
    });
}
