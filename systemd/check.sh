#!/usr/bin/env bash
# Checks the unit file: `systemd-analyze verify` is clean and the security
# exposure is at most 2.0; and the installer, run into a scratch root: the
# configuration (it holds secrets) is 0600 and an existing wider one is narrowed.
# Run by .ci/run. Needs a built binary (argument or target/debug/chats3) because
# verify checks ExecStart.
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

conf="$tmp/root/etc/chats3/chats3.toml"
config_mode() { [ "$(stat -c %a "$conf")" = 600 ] || { echo "installer: $conf is mode $(stat -c %a "$conf"), not 600" >&2; exit 1; }; }
DESTDIR="$tmp/root" bash "$here/install.sh" "$bin" >/dev/null
config_mode
chmod 0644 "$conf"
DESTDIR="$tmp/root" bash "$here/install.sh" "$bin" >/dev/null
config_mode
grep -qx 'LoadCredential=chats3.toml:/etc/chats3/chats3.toml' "$here/chats3.service" &&
  grep -q '^ExecStart=.* --config %d/chats3.toml ' "$here/chats3.service" ||
  { echo "the unit must read the configuration through LoadCredential (it is root-only)" >&2; exit 1; }
echo "installer: configuration 0600, read through LoadCredential"
