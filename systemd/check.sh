#!/usr/bin/env bash
# Checks the unit file: `systemd-analyze verify` is clean and the security
# exposure is at most 2.0. Run by .ci/run. Needs a built binary (argument or
# target/debug/chats3) because verify checks ExecStart.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(realpath "${1:-$here/../target/debug/chats3}")"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
sed "s#/usr/local/bin/chats3#$bin#" "$here/chats3.service" > "$tmp/chats3.service"
out="$(systemd-analyze verify --man=no "$tmp/chats3.service" 2>&1 || true)"
if [ -n "$out" ]; then echo "systemd-analyze verify:"; echo "$out"; exit 1; fi
score="$(systemd-analyze security --offline=true "$tmp/chats3.service" 2>/dev/null | sed -n 's/.*Overall exposure level for chats3.service: \([0-9.]*\).*/\1/p')"
echo "systemd unit: verify clean, exposure $score"
awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.0) }' || { echo "exposure $score is above 2.0" >&2; exit 1; }
"$bin" --config "$here/chats3.toml" check-config >/dev/null
echo "example config: valid"
