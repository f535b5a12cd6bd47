#!/usr/bin/env bash
# Runs every test chats3 has, on a fresh machine: installs what the suites
# need (Debian's chromium for the browser tests, nats-server for the cluster
# tests, the e2e suite's npm packages),
# then the Rust unit + integration tests (the S3 ones use an in-process
# S3-protocol server on 127.0.0.1) and the headless-Chromium end-to-end suite.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing chromium (Debian package)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null
fi

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  echo "== installing nats-server (Debian package; the cluster tests start their own)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nats-server >/dev/null
  # The package enables a system service; the tests need none running.
  as_root systemctl disable --now nats-server >/dev/null 2>&1 || true
fi

echo "== cargo test (unit + integration)"
# The parsers' property tests (`mod fuzz`) run this many cases each on CI
# (256 by default; about a minute in all at 2048 on 2 cores).
PROPTEST_CASES="${PROPTEST_CASES:-2048}" cargo test --workspace --all-targets --no-fail-fast

echo "== end-to-end (headless Chromium)"
bash tests/e2e/run.sh
