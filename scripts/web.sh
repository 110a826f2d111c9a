#!/usr/bin/env bash
# Builds the web client (gateway/web) into gateway/web/dist, which the gateway embeds in
# its binary: npm ci when package-lock.json changed, then npm run build (type check and
# bundle). Skipped, with a note, where npm is missing: the gateway then serves a page
# that says how to build it.
set -euo pipefail
cd "$(dirname "$0")/../gateway/web"
if ! command -v npm >/dev/null; then
  echo "web.sh: npm not found: the web client is not built (scripts/setup.sh installs it)" >&2
  exit 0
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "web.sh: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi
# Rebuilt only when a source is newer than the build: the gateway re-embeds (and
# recompiles) whenever dist/ changes.
if [ -f dist/index.html ] && [ -z "$(find src index.html style.css build.mjs package-lock.json tsconfig.json -newer dist/index.html 2>/dev/null | head -1)" ]; then
  exit 0
fi
npm run --silent build
