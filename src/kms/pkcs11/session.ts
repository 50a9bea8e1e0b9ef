/**
 * PKCS#11 module and token state shared by every pkcs11: driver of the process.
 *
 * - A module (.so) is loaded and C_Initialize'd once per process (CKF_OS_LOCKING_OK, because the
 *   binding's *Async calls run on libuv worker threads); CKR_CRYPTOKI_ALREADY_INITIALIZED means someone
 *   else in the process did it, and then we never C_Finalize it.
 * - A token is opened once: an anchor session that stays open for as long as a driver uses the token
 *   (PKCS#11 logs the application out when its last session closes) and is the one we C_Login on, plus
 *   a small pool of sessions for operations (one operation per session at a time).
 * - PKCS#11 login is per application and token, and C_Login on a logged-in token answers
 *   CKR_USER_ALREADY_LOGGED_IN without checking the PIN. So a second driver on a logged-in token must
 *   present the same PIN (compared by salted hash), or it gets AUTH: a wrong PIN never rides on
 *   someone else's login.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import type * as P11 from 'pkcs11js';
import { err } from '../../errors.js';
import { ckrName, mapError } from './errors.js';

export type Lib = typeof P11;
export type Pkcs11 = P11.PKCS11;
export type Handle = Buffer;

interface ModuleState {
  path: string;
  lib: Lib;
  p11: Pkcs11;
  /** we called C_Initialize successfully (so we C_Finalize at the end) */
  owned: boolean;
  refs: number;
}

export interface TokenSelector {
  token?: string;
  serial?: string;
  slotId?: string;
}

const modules = new Map<string, ModuleState>();
const tokens = new Map<string, Token>();

async function loadLib(): Promise<Lib> {
  try {
    const m = (await import('pkcs11js')) as unknown as { default?: Lib } & Lib;
    return (m.default ?? m) as Lib;
  } catch (e) {
    throw err('UNSUPPORTED', `pkcs11: the pkcs11js binding is not installed or did not build (${(e as Error).message.split('\n')[0]})`);
  }
}

async function openModule(path: string): Promise<ModuleState> {
  const have = modules.get(path);
  if (have) {
    have.refs++;
    return have;
  }
  if (!existsSync(path))
    throw err('UNAVAILABLE', `pkcs11: module ${path} does not exist: set module-path to the vendor's PKCS#11 library (.so)`, {
      retryable: false,
    });
  const lib = await loadLib();
  const again = modules.get(path); // another open raced us across the await
  if (again) {
    again.refs++;
    return again;
  }
  const p11 = new lib.PKCS11();
  try {
    p11.load(path);
  } catch (e) {
    throw err('UNAVAILABLE', `pkcs11: cannot load module ${path}: ${(e as Error).message.split('\n')[0]}`, { retryable: false });
  }
  let owned = true;
  try {
    p11.C_Initialize({ flags: lib.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (ckrName(e) === 'CKR_CRYPTOKI_ALREADY_INITIALIZED') owned = false;
    else {
      try {
        p11.close();
      } catch {
        /* ignore */
      }
      throw err(
        'UNAVAILABLE',
        `pkcs11: module ${path} failed to initialise (${ckrName(e) ?? 'error'}): check its configuration (e.g. SOFTHSM2_CONF for SoftHSM)`,
        { retryable: false },
      );
    }
  }
  const st: ModuleState = { path, lib, p11, owned, refs: 1 };
  modules.set(path, st);
  return st;
}

function releaseModule(m: ModuleState): void {
  if (--m.refs > 0) return;
  modules.delete(m.path);
  try {
    if (m.owned) m.p11.C_Finalize();
  } catch {
    /* ignore */
  }
  try {
    m.p11.close();
  } catch {
    /* ignore */
  }
}

function pinDigest(salt: Buffer, pin: string): Buffer {
  return createHash('sha256').update(salt).update(pin, 'utf8').digest();
}

const trimPad = (s: string) => s.replace(/[\s\0]+$/, '');

export class Token {
  readonly lib: Lib;
  readonly p11: Pkcs11;
  readonly slot: Handle;
  readonly label: string;
  private refs = 0;
  private anchor: Handle | undefined;
  private pinSalt = randomBytes(16);
  private pinHash: Buffer | undefined;
  private idle: Handle[] = [];
  private open = 0;
  private waiters: Array<{ resolve: (s: Handle) => void; reject: (e: unknown) => void }> = [];
  /** capabilities probed once per token (see caps.ts) */
  capsPromise: Promise<unknown> | undefined;

  private constructor(
    readonly key: string,
    readonly mod: ModuleState,
    slot: Handle,
    label: string,
    private readonly maxSessions: number,
  ) {
    this.lib = mod.lib;
    this.p11 = mod.p11;
    this.slot = slot;
    this.label = label;
  }

  /** open (or share) the token named by `sel` in module `path`, logged in with `pin` */
  static async open(path: string, sel: TokenSelector, pin: string | undefined, poolSize: number): Promise<Token> {
    const mod = await openModule(path);
    try {
      const slot = findSlot(mod, sel);
      const key = `${path}\0${slot.toString('hex')}`;
      let t = tokens.get(key);
      if (!t) {
        const info = mod.p11.C_GetTokenInfo(slot);
        t = new Token(key, mod, slot, trimPad(info.label), poolSize);
        t.start(pin);
        tokens.set(key, t);
        // the module reference now belongs to the token
        t.refs = 1;
        return t;
      }
      t.checkPin(pin);
      t.refs++;
      releaseModule(mod); // the token already holds one
      return t;
    } catch (e) {
      releaseModule(mod);
      throw e;
    }
  }

  /** the token is shared: a second user must bring the same PIN the process logged in with */
  private checkPin(pin: string | undefined): void {
    if (!this.pinHash) {
      if (pin !== undefined) this.login(pin);
      return;
    }
    if (pin === undefined || !timingSafeEqual(pinDigest(this.pinSalt, pin), this.pinHash)) {
      throw err(
        'AUTH',
        `pkcs11: the PIN for token '${this.label}' is wrong (it differs from the one this process is logged in with): check pin-value / ` +
          `pin-source / KEYPORT_PKCS11_PIN`,
      );
    }
  }

  private start(pin: string | undefined): void {
    const { p11, lib } = this;
    try {
      this.anchor = p11.C_OpenSession(this.slot, lib.CKF_SERIAL_SESSION | lib.CKF_RW_SESSION);
    } catch (e) {
      throw mapError(e, `open a session on token '${this.label}'`);
    }
    try {
      const info = p11.C_GetTokenInfo(this.slot);
      if (pin !== undefined) this.login(pin);
      else if (info.flags & lib.CKF_LOGIN_REQUIRED) {
        throw err(
          'AUTH',
          `pkcs11: token '${this.label}' needs a PIN: add ?pin-value=… or pin-source=file:… to the URI, or set KEYPORT_PKCS11_PIN`,
        );
      }
    } catch (e) {
      this.closeQuietly(this.anchor);
      this.anchor = undefined;
      throw e;
    }
  }

  private login(pin: string): void {
    try {
      this.p11.C_Login(this.anchor!, this.lib.CKU_USER, pin);
    } catch (e) {
      // logged in by another user of the module in this process: we cannot check the PIN; accept it
      if (ckrName(e) !== 'CKR_USER_ALREADY_LOGGED_IN') throw mapError(e, `log in to token '${this.label}'`);
    }
    this.pinHash = pinDigest(this.pinSalt, pin);
  }

  private closeQuietly(s: Handle | undefined): void {
    if (!s) return;
    try {
      this.p11.C_CloseSession(s);
    } catch {
      /* ignore */
    }
  }

  private acquire(): Promise<Handle> | Handle {
    const s = this.idle.pop();
    if (s) return s;
    if (this.open < this.maxSessions) {
      try {
        const h = this.p11.C_OpenSession(this.slot, this.lib.CKF_SERIAL_SESSION | this.lib.CKF_RW_SESSION);
        this.open++;
        return h;
      } catch (e) {
        throw mapError(e, `open a session on token '${this.label}'`);
      }
    }
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private release(s: Handle, broken: boolean): void {
    if (broken) {
      this.closeQuietly(s);
      this.open--;
      const w = this.waiters.shift();
      if (w) {
        // open a fresh session for the waiter (or hand it the error)
        try {
          w.resolve(this.acquire() as Handle);
        } catch (e) {
          w.reject(e);
        }
      }
      return;
    }
    const w = this.waiters.shift();
    if (w) w.resolve(s);
    else this.idle.push(s);
  }

  /**
   * Run `fn` on a pooled session. A session on which any PKCS#11 call failed is closed rather than
   * reused (its operation state is unknown); errors are mapped with `op`.
   */
  async with<T>(
    op: string,
    fn: (s: Handle) => Promise<T> | T,
    override?: Partial<Record<string, import('../../errors.js').ErrorCode>>,
  ): Promise<T> {
    if (this.refs <= 0) throw err('UNAVAILABLE', 'pkcs11: the driver is closed', { retryable: false });
    const s = await this.acquire();
    let broken = false;
    try {
      return await fn(s);
    } catch (e) {
      broken = ckrName(e) !== undefined;
      throw mapError(e, op, override);
    } finally {
      this.release(s, broken);
    }
  }

  tokenInfo(): P11.TokenInfo {
    return this.p11.C_GetTokenInfo(this.slot);
  }

  close(): void {
    if (this.refs <= 0) return;
    if (--this.refs > 0) return;
    tokens.delete(this.key);
    for (const s of this.idle) this.closeQuietly(s);
    this.idle = [];
    this.open = 0;
    this.closeQuietly(this.anchor);
    this.anchor = undefined;
    releaseModule(this.mod);
  }
}

function findSlot(mod: ModuleState, sel: TokenSelector): Handle {
  const { p11 } = mod;
  let slots: Handle[];
  try {
    slots = p11.C_GetSlotList(true);
  } catch (e) {
    throw mapError(e, 'list slots');
  }
  if (sel.slotId !== undefined) {
    const want = BigInt(sel.slotId);
    const s = slots.find((h) => h.readBigUInt64LE(0) === want);
    if (!s) throw err('UNAVAILABLE', `pkcs11: no token in slot ${sel.slotId} of module ${mod.path}`);
    return s;
  }
  const matches: Handle[] = [];
  for (const s of slots) {
    let info: P11.TokenInfo;
    try {
      info = p11.C_GetTokenInfo(s);
    } catch {
      continue;
    }
    if (!(info.flags & mod.lib.CKF_TOKEN_INITIALIZED)) continue;
    if (sel.token !== undefined && trimPad(info.label) !== sel.token) continue;
    if (sel.serial !== undefined && trimPad(info.serialNumber) !== sel.serial) continue;
    matches.push(s);
  }
  const what =
    sel.token !== undefined ? `labelled '${sel.token}'` : sel.serial !== undefined ? `with serial '${sel.serial}'` : 'initialised';
  if (matches.length === 0)
    throw err(
      'UNAVAILABLE',
      `pkcs11: no token ${what} in module ${mod.path}: check token= (the token label) and that the token is initialised`,
    );
  if (matches.length > 1)
    throw err('USAGE', `pkcs11: ${matches.length} tokens ${what} in module ${mod.path}: name one with token=LABEL, serial=… or slot-id=…`);
  return matches[0]!;
}
