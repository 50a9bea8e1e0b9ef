/**
 * The store contract (test/support/store-conformance.ts) for the embedded stores. kes-fs is not here:
 * it holds only what KES's file format can (one aes256 version, KES's own fields), so records do not
 * round-trip field for field; test/compat/kes-format.test.ts covers it.
 */
import { join } from 'node:path';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { openFsStore } from '../../src/store/fs.js';
import { runStoreConformance } from '../support/store-conformance.js';
import { tempDir } from '../support/tmp.js';

const dir = tempDir();
let n = 0;
runStoreConformance('sqlite', () => openSqliteStore(join(dir, `s${n++}.db`), 'sqlite:test'));
runStoreConformance('fs', () => openFsStore(join(dir, `f${n++}`), 'fs:test'));
