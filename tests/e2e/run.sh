#!/usr/bin/env bash
# End-to-end suite: builds chats3, then runs the node tests, which start their own servers
# (tests/e2e/lib.mjs: free 127.0.0.1 port, fresh CHATS3_DATA_DIR, killed by PID; the restart test
# restarts on the same port and data dir) and drive /usr/bin/chromium with fake media devices.
# Screenshots and server logs go to tests/e2e/artifacts/. Exits non-zero on any failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
start=$(date +%s)

command -v "${CHROMIUM:-/usr/bin/chromium}" >/dev/null || { echo "chromium not found (apt-get install -y chromium)" >&2; exit 1; }
# Release, as self-hosters run it: a debug build forwarding six pages' media (SRTP in
# unoptimised code) on 2 shared cores answers ICE checks seconds late and calls drop.
(cd "$root" && cargo build --release --quiet --bin chats3)
# Snapshot the binary right away: another build sharing target/ may replace it while we run.
bin_dir="$(mktemp -d)"
trap 'rm -rf "$bin_dir"' EXIT
cp "$root/target/release/chats3" "$bin_dir/chats3"
export CHATS3_BIN="$bin_dir/chats3"

cd "$here"
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --silent; else npm install --no-audit --no-fund --silent; fi
rm -rf artifacts && mkdir -p artifacts

status=0
if [ $# -eq 0 ]; then
  # The integrator guide's signing snippets against their fixed vectors (a few seconds).
  bash "$root/tests/sdk-vectors/run.sh" || status=$?
  set -- *.test.mjs
fi
node --test --test-concurrency=1 --test-reporter=spec "$@" || status=$?
echo "e2e: finished in $(( $(date +%s) - start )) s (exit $status); artifacts in tests/e2e/artifacts/"
exit $status
