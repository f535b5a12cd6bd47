#!/usr/bin/env bash
# Type check of the browser app (static/js): plain ES modules with `// @ts-check` and JSDoc types,
# checked by TypeScript's tsc (pinned in tools/jscheck/package-lock.json) and never compiled: the
# files are served as written. Exits non-zero on any type error.
set -euo pipefail
dir="$(cd "$(dirname "$0")/../tools/jscheck" && pwd)"
cd "$dir"
command -v npm >/dev/null || { echo "npm not found (apt-get install -y nodejs npm)" >&2; exit 1; }
npm ci --no-audit --no-fund --silent
npx --no-install tsc -p tsconfig.json
echo "js type check: no errors in $(find ../../static/js -name '*.js' | wc -l) files ($(npx --no-install tsc --version))"
