/**
 * `keyport help [COMMAND…]` and `keyport help uris`: the built-in help command, plus the reference of
 * every store and KMS address (docs/uris.md, shipped in the package, printed as it is).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { err } from '../errors.js';
import { examples } from './output.js';

/** help topics that are not commands: name -> file under docs/ in the package */
export const HELP_TOPICS: Record<string, { file: string; what: string }> = {
  uris: { file: 'uris.md', what: 'every store and KMS address: attributes, defaults, an example per backend' },
};

export function topicText(topic: string): string {
  const t = HELP_TOPICS[topic];
  if (!t) throw err('USAGE', `no help topic '${topic}'`);
  try {
    return readFileSync(new URL(`../../docs/${t.file}`, import.meta.url), 'utf8');
  } catch {
    throw err('NOT_FOUND', `docs/${t.file} is missing from this installation`);
  }
}

/** examples shown under each command's --help (a command path -> command lines) */
const EXAMPLES: Record<string, string[]> = {
  'key create': [
    'keyport key create data-key --store sqlite:keys.db                 # aes256 (KES-compatible)',
    'keyport key create node-key --type ec-p256 --usage namespace',
    'keyport key create app-key -k --server https://127.0.0.1:7373       # on a keyport/KES server',
  ],
  'key import': [
    'keyport key import app-key --file app-key.pem --type ec-p256',
    'head -c 32 /dev/urandom | keyport key import data-key --file -',
  ],
  'key export': [
    'keyport key export node-key --pem --out node-key.pem                # a new 0600 file',
    'keyport key export data-key --json        # {"name","type","version","format","key": base64}',
  ],
  'key ls': ['keyport key ls', "keyport key ls 'app-*' --json"],
  'key describe': ['keyport key describe node-key', 'keyport key describe node-key --json'],
  'key versions': ['keyport key versions node-key'],
  'key public': [
    'keyport key public node-key --pem > node-key.pem',
    'keyport key public node-key --json        # {"name","publicKey": base64 DER,"pem"}',
  ],
  'key rm': ['keyport key rm old-key                    # asks first on a terminal', 'keyport key rm old-key --yes'],
  'key register': ["keyport key register wrapper --store 'awskms:region=eu-west-1' --key-id alias/keyport-wrapper"],
  'key rotate': ['keyport key rotate node-key', 'keyport key versions node-key'],
  'key sign': [
    'keyport key sign node-key --in msg --out msg.sig',
    'echo hello | keyport key sign node-key > msg.sig                 # --in/--out default to stdin/stdout',
    'keyport key sign node-key --in msg --json  # {"name","format","signature": base64}',
  ],
  'key verify': ['keyport key verify node-key --in msg --sig msg.sig && echo valid'],
  'key encrypt': [
    'keyport key encrypt data-key --in msg --out msg.enc --context demo',
    'keyport key encrypt data-key --in msg --json  # {"name","ciphertext": base64}',
  ],
  'key decrypt': [
    'keyport key decrypt data-key --in msg.enc --context demo        # to stdout',
    'keyport key decrypt data-key --in msg.enc --out msg',
  ],
  'key generate': ['keyport key generate data-key             # {"plaintext","ciphertext"}, base64, like kes key dek'],
  'key hmac': ['echo hello | keyport key hmac data-key'],
  'protect enable': [
    'keyport protect enable --store sqlite:keys.db --wrapper local:/var/lib/keyport/wrapper.key',
    "keyport protect enable --store sqlite:keys.db --wrapper 'awskms:region=eu-west-1;key-id=alias/keyport-wrapper'",
  ],
  'protect disable': [
    'keyport protect disable --store sqlite:keys.db          # asks first on a terminal',
    'keyport protect disable --store sqlite:keys.db --yes',
  ],
  'protect rotate': ["keyport protect rotate --store sqlite:keys.db --wrapper 'awskms:region=eu-west-1;key-id=alias/wrapper-2026'"],
  migrate: [
    'keyport migrate --from sqlite:keys.db --to fs:./backup --dry-run',
    'keyport migrate --from kes-fs:/var/lib/kes/keys --to sqlite:keys.db --merge',
    "keyport migrate 'app-*' --from sqlite:keys.db --to 'awskms:region=eu-west-1' --json",
  ],
  doctor: ['keyport doctor sqlite:keys.db', "keyport doctor 'awskms:region=eu-west-1;key-id=alias/keyport-wrapper' --json"],
  'driver-test': [
    'keyport driver-test driver:./my-driver.js',
    "keyport driver-test 'pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=t' --json",
  ],
  'node init': [
    'keyport node init p1 --profile participant --store sqlite:keys.db',
    "keyport node init p1 --profile participant --store 'awskms:region=eu-west-1' --offline-root",
  ],
  'node ls': ['keyport node ls --store sqlite:keys.db'],
  'node show': ['keyport node show p1 --store sqlite:keys.db --json'],
  'node export': [
    'keyport node export p1 --store sqlite:keys.db --out p1-identity/       # certificates for Canton',
    'keyport node export p1 --store sqlite:keys.db --bundle p1.bundle.json  # the whole identity (0600)',
  ],
  'node verify': ['keyport node verify p1-identity/'],
  'node delegate': [
    'keyport node delegate --namespace-of p1 --to-key p1-ns2 --restriction all --store sqlite:keys.db --out p1-ns2.cert',
    "keyport node delegate --root-key 'pkcs11:module-path=…;token=root;object=root' --to-public-key p1-ns.pem --out p1-ns.cert",
  ],
  'node root-cert': ["keyport node root-cert --root-key 'pkcs11:module-path=…;token=root;object=root' --out root.cert"],
  'node import-certs': ['keyport node import-certs p1 root.cert p1-ns.cert --store sqlite:keys.db'],
  'node import': ['keyport node import p1.bundle.json --store sqlite:other.db --as p2'],
  'node rotate': [
    'keyport node rotate p1 --role protocol --store sqlite:keys.db',
    'keyport node export p1 --store sqlite:keys.db --out p1-identity/',
  ],
  'node canton-config': ['keyport node canton-config p1 --store sqlite:keys.db'],
  'node iam-policy': ["keyport node iam-policy p1 --store 'awskms:region=eu-west-1'"],
  'node compat': ['keyport node compat p1 s1 --store sqlite:keys.db'],
  server: [
    'keyport server --dev',
    'keyport server --config kes-config.yml',
    'keyport server --config kes-config.yml --json    # JSON lines: {"time","event":"listening","url",…}',
  ],
};

const ENVIRONMENT = `
Environment:
  KEYPORT_STORE                          default --store
  KEYPORT_SERVER, KES_SERVER             default --server (used when no --store is given)
  KEYPORT_API_KEY, KES_API_KEY           API key for --server (kes:v1:…)
  KES_CLIENT_CERT, KES_CLIENT_KEY        client certificate and key for --server (mTLS), instead of an API key
  KEYPORT_CA                             CA file for the server certificate; KEYPORT_INSECURE=1 is -k
  KEYPORT_HOME                           --dev state, external-mode catalogs, journals (default ~/.keyport)
  KEYPORT_PKCS11_PIN, KEYPORT_PKCS11_MODULE, AWS_PROFILE, AWS_REGION, …  KMS credentials: keyport help uris
`;

/** attach the examples (and the key group's environment) to the commands registered before */
function addExamples(program: Command): void {
  const walk = (c: Command, path: string) => {
    for (const sub of c.commands) {
      const p = path ? `${path} ${sub.name()}` : sub.name();
      const ex = EXAMPLES[p];
      if (ex) sub.addHelpText('after', examples(...ex));
      if (p === 'key' || p.startsWith('key ')) sub.addHelpText('after', ENVIRONMENT);
      walk(sub, p);
    }
  };
  walk(program, '');
}

export function register(program: Command): void {
  addExamples(program);
  program.helpCommand(false);
  program
    .command('help [topic...]')
    .description('help for a command (keyport help key create), or a topic: uris')
    .action((topic: string[]) => {
      if (topic.length === 1 && HELP_TOPICS[topic[0]!]) {
        process.stdout.write(topicText(topic[0]!));
        return;
      }
      let c: Command = program;
      for (const t of topic) {
        const next = c.commands.find((x) => x.name() === t || x.aliases().includes(t));
        if (!next)
          throw err(
            'USAGE',
            `no command or help topic '${topic.join(' ')}': see keyport --help; topics: ${Object.keys(HELP_TOPICS).join(', ')}`,
          );
        c = next;
      }
      c.help();
    });
  program.addHelpText(
    'after',
    `\nStore and KMS addresses (sqlite:, fs:, awskms:, pkcs11:, …): keyport help uris\n` +
      `Every command: keyport COMMAND --help (examples included); --json for machine-readable output.\n`,
  );
}
