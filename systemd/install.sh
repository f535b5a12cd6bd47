#!/usr/bin/env bash
# Installs chats3 as a systemd service on this machine. Idempotent: run it again
# to upgrade the binary; an existing /etc/chats3/chats3.toml is kept.
#   sudo systemd/install.sh [path/to/chats3]   (default: target/release/chats3)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../target/release/chats3}"
[ "$(id -u)" = 0 ] || { echo "run as root (sudo)" >&2; exit 1; }
[ -x "$bin" ] || { echo "no binary at $bin — build it with: cargo build --release" >&2; exit 1; }

install -D -m 0755 "$bin" /usr/local/bin/chats3
install -D -m 0644 "$here/chats3.service" /etc/systemd/system/chats3.service
install -d -m 0755 /etc/chats3
if [ ! -f /etc/chats3/chats3.toml ]; then
  install -m 0644 "$here/chats3.toml" /etc/chats3/chats3.toml
  echo "installed /etc/chats3/chats3.toml — review it"
else
  echo "kept existing /etc/chats3/chats3.toml"
fi
/usr/local/bin/chats3 --config /etc/chats3/chats3.toml check-config

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
  echo "admin password: sudo cat /var/lib/chats3/admin-password (also printed once in: journalctl -u chats3)"
fi
