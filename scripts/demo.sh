#!/usr/bin/env bash
# Runs the local demo grid: an introducer, storage nodes and a gateway serving the web UI, all on
# 127.0.0.1 in one `lafs demo` process. Installs what is missing (scripts/install-tools.sh), builds
# the web app when Trunk is available, builds `lafs` in release mode and starts the grid.
#
#   scripts/demo.sh                          10 storage nodes, web UI on http://127.0.0.1:3456/
#   scripts/demo.sh --port 8080 --storage-nodes 5 --dir /tmp/grid
#   LAFS_DEMO_INSTALL=0 scripts/demo.sh      skip the install step
#
# Nodes live in ./lafs-demo (kept between runs, so uploads survive a restart); the client node
# DIR/client works with `lafs put --node lafs-demo/client FILE` and `lafs get --node ...`.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[demo] %s\n' "$*" >&2; }
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

if [ "${LAFS_DEMO_INSTALL:-1}" != 0 ]; then
  scripts/install-tools.sh
fi

target="${CARGO_TARGET_DIR:-target}"
web_dist="$PWD/web/dist"
if command -v trunk >/dev/null; then
  log "building the web app (trunk build --release in web/)"
  if ! (cd web && trunk build --release); then
    log "the web app did not build: the gateway will serve the web API only"
  fi
else
  log "trunk not found: the gateway will serve the web API only (scripts/install-tools.sh installs trunk)"
fi

log "building lafs (release)"
cargo build --release -p lafs-cli
exec "$target/release/lafs" demo --web "$web_dist" "$@"
