#!/usr/bin/env bash
# Installs what the build and tests need, skipping whatever is already present (a re-run takes
# about a second). Only package registries are used (crates.io via rustup/cargo, Debian apt, npm);
# nothing is downloaded from anywhere else, and no browser is downloaded by npm.
#
# Needs: a Debian machine with rustup + Rust stable and Node 20; root (or sudo) for apt.
#
#   scripts/install-tools.sh
#   LAFS_BROWSER_TOOLS=0 scripts/install-tools.sh   Rust components only (no Chromium, Trunk,
#                                                   wasm-bindgen-cli or Playwright)
#
# Fresh-machine cost is dominated by the two `cargo install`s (trunk, wasm-bindgen-cli), which run
# side by side; the timings are printed at the end. Measured on a 2-core machine shared with other
# builds (load 4-10): apt 13 s, wasm-bindgen-cli 616 s and trunk 952 s in parallel (833 s CPU in
# all), npm ci 1 s; about 8-10 minutes on an idle 2-core machine. A re-run takes under a second.
# Building trunk without fat LTO: its last crate takes ~120 s of CPU spread over 16 codegen units
# instead of ~4 minutes on one core.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[install] %s\n' "$*" >&2; }
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
t_all=$(date +%s)
timings=()
timed() { # timed LABEL START: records the wall time of a step since START
  timings+=("$1: $(($(date +%s) - $2)) s")
}

if ! command -v cargo >/dev/null; then
  log "cargo not found: install Rust stable with rustup first"; exit 1
fi
for comp in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$comp"; then
    t=$(date +%s); log "rustup component add $comp"; rustup component add "$comp"; timed "$comp" "$t"
  fi
done
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  t=$(date +%s); log "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown; timed "wasm32 target" "$t"
fi
log "toolchain ready: $(rustc --version)"

if [ "${LAFS_BROWSER_TOOLS:-1}" = 0 ]; then
  log "LAFS_BROWSER_TOOLS=0: skipping browser tools"; exit 0
fi

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

# --- Chromium + chromedriver from Debian: used by Playwright and by wasm-bindgen-test-runner.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  t=$(date +%s); log "apt: installing chromium chromium-driver"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
  timed "apt chromium chromium-driver" "$t"
fi

# --- wasm-bindgen-cli (also provides wasm-bindgen-test-runner): must be exactly the version of
# the wasm-bindgen crate in Cargo.lock, or Trunk and the test runner refuse the module.
WASM_BINDGEN_VERSION=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -z "$WASM_BINDGEN_VERSION" ]; then
  log "no wasm-bindgen in Cargo.lock"; exit 1
fi
TRUNK_VERSION=0.21.14 # 0.22.x needs a newer rustc than the one we build with

# Crates are built in a scratch target dir of their own (not the caller's CARGO_TARGET_DIR).
# Without fat LTO and with parallel codegen the binaries are a little larger and slower, which does
# not matter for build tools, and trunk's last crate builds in a fraction of the time.
cargo_install() { # cargo_install CRATE VERSION LOG
  env -u CARGO_TARGET_DIR CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    CARGO_TERM_COLOR=never \
    cargo install --quiet --locked --force "$1" --version "=$2" >"$3" 2>&1 \
  || { echo "--- --locked failed; retrying without it" >>"$3"
       env -u CARGO_TARGET_DIR CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
         CARGO_TERM_COLOR=never \
         cargo install --quiet --force "$1" --version "=$2" >>"$3" 2>&1; }
}
logdir=$(mktemp -d)
pids=(); names=()
t_cargo=$(date +%s)
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ] \
   || [ "$(wasm-bindgen-test-runner --version 2>/dev/null || true)" != "wasm-bindgen-test-runner $WASM_BINDGEN_VERSION" ]; then
  log "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (background; a few minutes)"
  cargo_install wasm-bindgen-cli "$WASM_BINDGEN_VERSION" "$logdir/wasm-bindgen-cli.log" &
  pids+=($!); names+=(wasm-bindgen-cli)
fi
if [ "$(trunk --version 2>/dev/null || true)" != "trunk $TRUNK_VERSION" ]; then
  log "cargo install trunk $TRUNK_VERSION (background; several minutes)"
  cargo_install trunk "$TRUNK_VERSION" "$logdir/trunk.log" &
  pids+=($!); names+=(trunk)
fi

# --- npm packages of browser-tests (Playwright test runner; it uses the system Chromium).
if [ -f browser-tests/package-lock.json ]; then
  stamp=browser-tests/node_modules/.lafs-lock-sha256
  want=$(sha256sum browser-tests/package-lock.json | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    t=$(date +%s); log "npm ci in browser-tests"
    (cd browser-tests && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
    timed "npm ci browser-tests" "$t"
  fi
fi

failed=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then
    timings+=("cargo install ${names[$i]}: done $(($(date +%s) - t_cargo)) s after start")
  else
    log "cargo install ${names[$i]} FAILED; its output:"; cat "$logdir/${names[$i]}.log" >&2
    failed=1
  fi
done
rm -rf "$logdir"
[ "$failed" = 0 ] || exit 1

for t in "${timings[@]}"; do log "took: $t"; done
log "browser tools ready: $(wasm-bindgen --version) | $(trunk --version) | $(chromium --version 2>/dev/null) | $(chromedriver --version | cut -d' ' -f1-2) | node $(node --version)"
log "install done in $(($(date +%s) - t_all)) s"
