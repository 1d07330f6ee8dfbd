#!/usr/bin/env bash
# Runs the embedded local demo grid (introducer, storage nodes, gateway + web UI on 127.0.0.1).
set -euo pipefail
cd "$(dirname "$0")/.."
cat >&2 <<'TXT'
lafs demo: not available yet.

This command will build the web app, start an introducer, 10 storage nodes and a gateway on
127.0.0.1, and print the URL of the web UI that opens share links. The storage servers and the
gateway do not exist yet; today the repository contains the pure format crates (hash trees, caps,
the immutable codec), which `scripts/test.sh` builds and tests.
TXT
exit 2
