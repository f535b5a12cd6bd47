#!/usr/bin/env bash
# Installs chats3 as a systemd service on this machine. Idempotent: run it again
# to upgrade the binary; an existing /etc/chats3/chats3.toml is kept.
#   sudo systemd/install.sh [path/to/chats3]   (default: target/release/chats3)
# The configuration holds secrets: it is root-owned with mode 0600 from its first
# byte, and the unit hands it to the service's dynamic user with LoadCredential=.
# With DESTDIR=dir the files go under dir and nothing is started (no root needed;
# systemd/check.sh uses it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../target/release/chats3}"
root="${DESTDIR:-}"
[ -n "$root" ] || [ "$(id -u)" = 0 ] || { echo "run as root (sudo)" >&2; exit 1; }
[ -x "$bin" ] || { echo "no binary at $bin — build it with: cargo build --release" >&2; exit 1; }

install -D -m 0755 "$bin" "$root/usr/local/bin/chats3"
install -D -m 0644 "$here/chats3.service" "$root/etc/systemd/system/chats3.service"
install -d -m 0755 "$root/etc/chats3"
conf="$root/etc/chats3/chats3.toml"
if [ ! -f "$conf" ]; then
  (umask 077 && install -m 0600 "$here/chats3.toml" "$conf")
  echo "installed /etc/chats3/chats3.toml (mode 0600) — review it"
else
  chmod 0600 "$conf"
  echo "kept existing /etc/chats3/chats3.toml (mode set to 0600)"
fi
[ -n "$root" ] || chown root:root "$conf"
"$root/usr/local/bin/chats3" --config "$conf" check-config
[ -z "$root" ] || { echo "installed under $root"; exit 0; }

systemctl daemon-reload
systemctl enable chats3.service >/dev/null
if systemctl is-active --quiet chats3.service; then systemctl restart chats3.service; else systemctl start chats3.service; fi
systemctl is-active --quiet chats3.service || { journalctl -u chats3 -n 30 --no-pager; exit 1; }

port=$(sed -n 's/^port *= *\([0-9]*\).*/\1/p' /etc/chats3/chats3.toml | head -1)
echo
echo "chats3 is running: http://127.0.0.1:${port:-3000}/admin (put a TLS reverse proxy in front; see README)"
if grep -q '^admin_password' /etc/chats3/chats3.toml; then
  echo "admin password: the one in /etc/chats3/chats3.toml"
else
  echo "admin password: sudo cat /var/lib/chats3/admin-password (generated at first start; never logged)"
fi
