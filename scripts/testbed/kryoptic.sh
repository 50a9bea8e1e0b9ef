#!/usr/bin/env bash
# kryoptic (https://github.com/latchset/kryoptic, the Rust PKCS#11 soft token by Simo Sorce) as a second,
# independently written PKCS#11 token for the pkcs11: driver. Unlike SoftHSM2 2.6 it does RSA-OAEP with
# SHA-256 and the PKCS#11 3.0 CKM_AES_KEY_WRAP_KWP.
#
# install: the kryoptic crate ($KRYOPTIC_VERSION) from crates.io, built with cargo as the cdylib
#   libkryoptic_pkcs11.so, cached in $KEYPORT_CACHE/kryoptic-<version>-minimal/. Features: kryoptic-lib's
#   `minimal` (sqlite storage, AES, ECDSA/ECDH, hashes/HMAC, RSA) + `dynamic` (link the system OpenSSL;
#   without it the build wants OpenSSL sources). The default features need OpenSSL >= 3.2 (EdDSA), so no
#   Ed25519 here. Needs cargo (Rust >= 1.85, edition 2024), libclang (bindgen), libssl-dev, libsqlite3-dev.
# start: nothing listens on a port: a private config (KRYOPTIC_CONF) with one sqlite slot under
#   $TB_STATE/kryoptic, a token labelled `keyport` initialised there if there is none yet (C_InitToken +
#   C_InitPIN through the repo's pkcs11js), then the module, config, token and PINs as KEY=VALUE lines.
# stop: nothing runs; the token database is removed so that the next start initialises a fresh token.
source "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

KRYOPTIC_VERSION=1.5.4
FEATURES=kryoptic-lib/minimal,kryoptic-lib/dynamic
BUILD="$KEYPORT_CACHE/kryoptic-$KRYOPTIC_VERSION-minimal"
MODULE="$BUILD/libkryoptic_pkcs11.so"

STATE="$TB_STATE/kryoptic"
CONF="$STATE/kryoptic.conf"
DB="$STATE/token.sql"
SLOT=7
LABEL=keyport
# fixed test values: this token holds nothing but test keys
SO_PIN=keyport-so-1234
USER_PIN=keyport-user-1234

find_cargo() {
  if command -v cargo >/dev/null; then command -v cargo; return 0; fi
  [[ -x $HOME/.cargo/bin/cargo ]] && { echo "$HOME/.cargo/bin/cargo"; return 0; }
  return 1
}

# the unpacked kryoptic-$KRYOPTIC_VERSION crate: cargo resolves a throw-away manifest that depends on it
# (downloading it from crates.io into CARGO_HOME if needed) and `cargo metadata` says where it is
crate_source() {
  local cargo=$1 dir="$BUILD/fetch"
  mkdir -p "$dir/src"
  cat >"$dir/Cargo.toml" <<EOF
[package]
name = "keyport-kryoptic-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[lib]
path = "src/lib.rs"

[dependencies]
kryoptic = { version = "=$KRYOPTIC_VERSION", default-features = false }
EOF
  : >"$dir/src/lib.rs"
  # (--offline second: crates.io unreachable but the crate already unpacked in CARGO_HOME)
  { "$cargo" metadata --manifest-path "$dir/Cargo.toml" --format-version 1 2>"$BUILD/fetch.log" ||
    "$cargo" metadata --offline --manifest-path "$dir/Cargo.toml" --format-version 1 2>>"$BUILD/fetch.log"; } |
    python3 -c '
import json, sys
m = json.load(sys.stdin)
for p in m["packages"]:
    if p["name"] == "kryoptic" and p["version"] == sys.argv[1]:
        print(p["manifest_path"].rsplit("/", 1)[0]); break
' "$KRYOPTIC_VERSION"
}

install() {
  [[ -f $MODULE ]] && return 0
  tb_install_lock kryoptic
  [[ -f $MODULE ]] && return 0
  local cargo rustv src t0
  cargo=$(find_cargo) || tb_unavailable "kryoptic: no cargo (Rust toolchain) to build it with"
  rustv=$("${cargo%/cargo}/rustc" --version 2>/dev/null || rustc --version 2>/dev/null || echo "rustc ?")
  if [[ $rustv =~ ^rustc\ 1\.([0-9]+) ]] && ((BASH_REMATCH[1] < 85)); then
    tb_unavailable "kryoptic: $rustv is too old (the crate is edition 2024: Rust >= 1.85)"
  fi
  tb_log "building kryoptic $KRYOPTIC_VERSION (features $FEATURES) with $rustv: about a minute on 2 cores"
  # bindgen (ossl-sys, kryoptic-lib) needs libclang; OpenSSL and SQLite are linked from the system
  tb_apt libclang-dev libssl-dev libsqlite3-dev pkg-config || tb_unavailable "kryoptic: apt-get install libclang-dev libssl-dev libsqlite3-dev failed"
  mkdir -p "$BUILD"
  src=$(crate_source "$cargo") || true
  [[ -n $src && -f $src/Cargo.toml ]] || tb_unavailable "kryoptic: cannot get the kryoptic $KRYOPTIC_VERSION crate from crates.io: $(tail -1 "$BUILD/fetch.log" 2>/dev/null)"
  rm -rf "$BUILD/src" "$BUILD/target"
  cp -r "$src" "$BUILD/src"
  t0=$SECONDS
  # --locked: the dependency versions of the crate's own Cargo.lock
  if ! (cd "$BUILD/src" && CARGO_TARGET_DIR="$BUILD/target" "$cargo" build --release --locked --no-default-features --features "$FEATURES") >"$BUILD/build.log" 2>&1; then
    tb_unavailable "kryoptic: cargo build failed (log: $BUILD/build.log): $(grep -m1 -E '^error' "$BUILD/build.log" || tail -1 "$BUILD/build.log")"
  fi
  [[ -f $BUILD/target/release/libkryoptic_pkcs11.so ]] || tb_unavailable "kryoptic: the build made no libkryoptic_pkcs11.so (log: $BUILD/build.log)"
  cp "$BUILD/target/release/libkryoptic_pkcs11.so" "$MODULE.tmp"
  mv "$MODULE.tmp" "$MODULE"
  echo "$((SECONDS - t0))" >"$BUILD/build-seconds"
  rm -rf "$BUILD/target" "$BUILD/src" # 250 MB of intermediates; the module is all we need
  tb_log "kryoptic built in $((SECONDS - t0)) s: $MODULE"
}

# run a pkcs11js script against the module with our config (pkcs11js is a dependency of the repo)
p11js() {
  [[ -d $TB_ROOT/node_modules/pkcs11js ]] || tb_unavailable "kryoptic: $TB_ROOT/node_modules/pkcs11js is missing (run npm ci) — it initialises the token"
  KRYOPTIC_CONF="$CONF" MODULE="$MODULE" LABEL="$LABEL" SO_PIN="$SO_PIN" USER_PIN="$USER_PIN" \
    node -e "const p = require('module').createRequire('$TB_ROOT/package.json')('pkcs11js'); $1"
}

token_ready() {
  [[ -f $DB ]] && p11js '
    const m = new p.PKCS11(); m.load(process.env.MODULE); m.C_Initialize();
    try {
      const ok = m.C_GetSlotList(true).some((s) => {
        const i = m.C_GetTokenInfo(s);
        return i.label.trim() === process.env.LABEL && (i.flags & p.CKF_TOKEN_INITIALIZED) && (i.flags & p.CKF_USER_PIN_INITIALIZED);
      });
      process.exit(ok ? 0 : 1);
    } finally { m.C_Finalize(); }' 2>/dev/null
}

ensure_token() {
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  if [[ ! -f $CONF ]]; then
    printf '[[slots]]\nslot = %d\ndescription = "keyport testbed"\ndbtype = "sqlite"\ndbargs = "%s"\n' "$SLOT" "$DB" >"$CONF"
  fi
  token_ready && return 0
  tb_log "initialising kryoptic token '$LABEL' in $DB"
  rm -f "$DB"
  p11js '
    const m = new p.PKCS11(); m.load(process.env.MODULE); m.C_Initialize();
    try {
      const slots = m.C_GetSlotList(false);
      if (slots.length !== 1) throw new Error(`expected one slot, found ${slots.length}`);
      m.C_InitToken(slots[0], process.env.SO_PIN, process.env.LABEL.padEnd(32));
      const s = m.C_OpenSession(slots[0], p.CKF_SERIAL_SESSION | p.CKF_RW_SESSION);
      m.C_Login(s, p.CKU_SO, process.env.SO_PIN);
      m.C_InitPIN(s, process.env.USER_PIN);
      m.C_Logout(s);
      m.C_CloseSession(s);
    } finally { m.C_Finalize(); }' >&2 || tb_unavailable "kryoptic: initialising the token failed"
  token_ready || tb_unavailable "kryoptic: token '$LABEL' not usable after init"
}

env_lines() {
  echo "KRYOPTIC_CONF=$CONF"
  echo "PKCS11_MODULE=$MODULE"
  echo "PKCS11_TOKEN=$LABEL"
  echo "PKCS11_PIN=$USER_PIN"
  echo "PKCS11_SO_PIN=$SO_PIN"
  echo "KRYOPTIC_VERSION=$KRYOPTIC_VERSION"
}

case "${1:-}" in
  install)
    tb_lock kryoptic
    install
    ;;
  start)
    tb_lock kryoptic
    install
    ensure_token
    env_lines
    ;;
  env)
    [[ -f $MODULE && -f $CONF && -f $DB ]] || tb_unavailable "kryoptic: not started (run $0 start)"
    env_lines
    ;;
  stop)
    # nothing runs; drop the token so that the next start begins with a fresh one (the build stays cached)
    tb_lock kryoptic
    rm -rf "$STATE"
    ;;
  *)
    echo "usage: $0 install|start|stop|env" >&2
    exit 2
    ;;
esac
