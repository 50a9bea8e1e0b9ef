/**
 * keyport as a library: the same functions the CLI and the server call.
 *
 *   import { openKeyring } from 'keyport-kms';
 *   const kr = await openKeyring('sqlite:keys.db');
 *   await kr.create('payments', { type: 'ec-p256' });
 *   const sig = await kr.sign('payments', Buffer.from('hello'));
 */
export { openKeyring, loadStoreConfig, type StoreConfig, type OpenOptions } from './keys/open.js';
export { StoreKeyring, type KeyringOptions } from './keys/keyring.js';
export type { Keyring, KeyInfo, CreateOptions, SignOptions, ExportedKey, VersionInfo } from './keys/types.js';
export { protectEnable, protectDisable, protectRotate, type ProtectResult } from './keys/protect.js';
export { migrate, type MigrateOptions, type MigrateReport } from './migrate/index.js';
export { openRecordStore } from './store/open.js';
export type { RecordStore, KeyRecord, VersionRecord, KeyUsage } from './store/types.js';
export { openDriver } from './kms/registry.js';
export type { Driver, DriverFactory, Health } from './kms/driver.js';
export { KeyportError, isKeyportError, type ErrorCode } from './errors.js';
export { KEY_TYPES, type KeyType } from './crypto/keytypes.js';
export { kesEncrypt, kesDecrypt } from './crypto/kes-ciphertext.js';
export { cantonFingerprint, kcv } from './crypto/fingerprint.js';
export { instrument, openInstrumentedDriver } from './kms/instrument.js';
export { runConformance, summarize } from './kms/conformance.js';
export { doctorKms, type DoctorReport } from './kms/doctor.js';
export { doctorStore } from './keys/doctor.js';
export { fileAuditSink, memoryAuditSink, type AuditSink } from './kms/audit.js';
export { RemoteKeyring, openRemoteKeyring } from './client/remote.js';
export { startServer } from './server/index.js';
export { loadServerConfig, type ServerConfig } from './server/config.js';
