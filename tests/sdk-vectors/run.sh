#!/usr/bin/env bash
# Checks the signing snippets of docs/integrators.md (sign.mjs, sign.py, sign.php, sign.go):
#  1. vectors.json itself: every signature is recomputed with Node's crypto and, when present,
#     the openssl CLI (vectors.json was made with Python's hmac by make-vectors.py);
#  2. each snippet whose language is installed runs on those inputs and must reproduce every
#     vector (languages not installed are reported as skipped: their vectors still stand);
#  3. the guide contains each snippet file verbatim.
# Exits non-zero on any mismatch. Needs python3; the rest is optional.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"
vectors="$here/vectors.json"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
status=0 passed=0 failed=0 skipped=0

pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); status=1; }

echo "== vectors.json: recompute the signatures independently"
if command -v node >/dev/null; then
  if node --input-type=module -e '
    import { readFileSync } from "node:fs"; import crypto from "node:crypto";
    const v = JSON.parse(readFileSync(process.argv[1], "utf8")); let bad = 0;
    const b64 = (k, d) => crypto.createHmac("sha256", k).update(d, "utf8").digest("base64url");
    for (const t of v.tickets) if (b64(t.secret, t.ticket) !== t.signature) { bad++; console.log("  node: ticket", t.name); }
    for (const m of v.systemMessages) {
      const s = JSON.stringify({ integratorId: m.integratorId, conversationId: m.conversationId, body: m.body, timestamp: m.timestamp });
      if (s !== m.signingString) { bad++; console.log("  node: signing string", m.name); }
      if (b64(m.secret, s) !== m.signature) { bad++; console.log("  node: system message", m.name); }
    }
    const c = v.webhook.cases.find((x) => x.name === "valid"); const [t, sig] = c.header.match(/^t=(\d+),v1=([0-9a-f]{64})$/).slice(1);
    if (crypto.createHmac("sha256", v.webhook.secret).update(`${t}.${c.body}`).digest("hex") !== sig) { bad++; console.log("  node: webhook"); }
    console.log(`  node crypto: ${bad ? "MISMATCH" : "all signatures agree"}`); process.exit(bad ? 1 : 0);' "$vectors"; then pass; else fail; fi
else
  echo "  node: not installed, skipped"; skipped=$((skipped + 1))
fi
if command -v openssl >/dev/null; then
  bad=0
  while IFS=$'\t' read -r secret data want; do
    got="$(printf '%s' "$data" | base64 -d | openssl dgst -sha256 -hmac "$secret" -binary | base64 | tr '+/' '-_' | tr -d '=\n')"
    [ "$got" = "$want" ] || { bad=1; echo "  openssl: mismatch for $want"; }
  done < <(python3 -c '
import base64, json, sys
v = json.load(open(sys.argv[1], encoding="utf-8"))
for t in v["tickets"]: print(t["secret"], base64.b64encode(t["ticket"].encode()).decode(), t["signature"], sep="\t")
for m in v["systemMessages"]: print(m["secret"], base64.b64encode(m["signingString"].encode()).decode(), m["signature"], sep="\t")' "$vectors")
  if [ $bad = 0 ]; then echo "  openssl: all signatures agree"; pass; else fail; fi
else
  echo "  openssl: not installed, skipped"; skipped=$((skipped + 1))
fi

echo "== snippets against vectors.json"
run_lang() { # name, command needed, command line...
  local lang="$1" need="$2"; shift 2
  if ! command -v "$need" >/dev/null; then
    echo "  $lang: $need not installed, skipped (vectors only)"; skipped=$((skipped + 1)); return
  fi
  if ! "$@" "$vectors" >"$tmp/$lang.json" 2>"$tmp/$lang.err"; then
    echo "  $lang: snippet failed to run:"; sed 's/^/    /' "$tmp/$lang.err" | head -30; fail; return
  fi
  if python3 compare.py expected "$vectors" "$tmp/$lang.json" "$lang"; then pass; else fail; fi
}
run_lang node node node harness.mjs
run_lang python python3 python3 harness.py
run_lang php php php harness.php
export GOCACHE="${GOCACHE:-$tmp/gocache}" GOFLAGS="${GOFLAGS:-}" GO111MODULE=off
run_lang go go go run sign.go harness.go

echo "== docs/integrators.md embeds each snippet verbatim"
if python3 compare.py doc "$root/docs/integrators.md" sign.mjs sign.py sign.php sign.go; then pass; else fail; fi

echo "sdk-vectors: $passed passed, $failed failed, $skipped skipped"
exit $status
