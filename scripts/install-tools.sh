#!/usr/bin/env bash
# Installs what the build and tests need, skipping whatever is already present.
# Only package registries are used (crates.io via rustup/cargo, Debian apt, npm).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[install] %s\n' "$*" >&2; }
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

if ! command -v cargo >/dev/null; then
  log "cargo not found: install Rust stable with rustup first"; exit 1
fi
for comp in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$comp"; then
    log "rustup component add $comp"; rustup component add "$comp"
  fi
done
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "rustup target add wasm32-unknown-unknown"; rustup target add wasm32-unknown-unknown
fi
log "toolchain ready: $(rustc --version)"
