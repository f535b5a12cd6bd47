#!/usr/bin/env bash
# Cluster mode against one node, in one run on this machine (BENCHMARKS.md,
# "Cluster mode"): durable ingest and cross-node fan-out through NATS
# JetStream with three chats3 nodes, then the same scenarios against a single
# node on sled alone. Needs `nats-server` (Debian package) and release builds:
#   cargo build --release -p chats3 -p chats3-load
# Usage: bash benches/cluster.sh [ingest concurrency] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
C="${1:-64}"
SECS="${2:-10}"
BIN=target/release/chats3
LOAD=target/release/chats3-load
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)
W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

wait_http() { for _ in $(seq 1 200); do curl -fs "$1/health" >/dev/null && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

node() { # name port [NATS_URL]
  mkdir -p "$W/$1"
  env CHATS3_DATA_DIR="$W/$1" HOST=127.0.0.1 PORT="$2" ADMIN_PASSWORD=benchpass123 \
    RATE_LIMIT_PER_MIN=0 ADMIN_RATE_LIMIT_PER_MIN=0 RUST_LOG=warn \
    COOKIE_SECRET=cluster-bench-secret-0123456789abcdef ${3:+NODE_ID=$1 NATS_URL=$3} \
    "$BIN" >"$W/$1.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$2"
}

echo "== three nodes on one NATS JetStream server"
"$NATS" -a 127.0.0.1 -p 4299 -js -sd "$W/nats" >"$W/nats.log" 2>&1 &
PIDS+=($!)
sleep 0.5
node n1 3971 nats://127.0.0.1:4299; N1=${PIDS[-1]}
node n2 3972 nats://127.0.0.1:4299
node n3 3973 nats://127.0.0.1:4299
echo "-- ingest through JetStream (posts to node 1; every node applies every message)"
"$LOAD" --target http://127.0.0.1:3971 --admin-password benchpass123 --server-pid "$N1" \
  ingest -c "$C" -d "$SECS"
echo "-- fan-out: senders on node 1, subscribers on node 2"
"$LOAD" --target http://127.0.0.1:3971 --admin-password benchpass123 \
  fanout -r 10 -s 20 -m 50 -d "$SECS" --subscribe-target http://127.0.0.1:3972
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
PIDS=()

echo "== one node, sled alone"
node solo 3974; SOLO=${PIDS[-1]}
"$LOAD" --target http://127.0.0.1:3974 --admin-password benchpass123 --server-pid "$SOLO" \
  ingest -c "$C" -d "$SECS"
"$LOAD" --target http://127.0.0.1:3974 --admin-password benchpass123 \
  fanout -r 10 -s 20 -m 50 -d "$SECS"
