/**
 * `keyport help [COMMAND…]` and `keyport help uris`: the built-in help command, plus the reference of
 * every store and KMS address (docs/uris.md, shipped in the package, printed as it is).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { err } from '../errors.js';

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

export function register(program: Command): void {
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
