"""Runs sign.py on vectors.json and prints {key: value} as JSON (compared by compare.py)."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sign import sign_system_message, sign_ticket, verify_webhook  # noqa: E402

with open(sys.argv[1], encoding="utf-8") as f:
    v = json.load(f)
out = {}
for t in v["tickets"]:
    f_ = t["fields"]
    ticket, sig = sign_ticket(t["secret"], f_["integratorId"], f_["conversationId"], f_["userId"],
                              f_["displayName"], f_["origin"], role=f_["role"], avatar_url=f_.get("avatarUrl"),
                              issued_at=f_["issuedAt"], expires_at=f_["expiresAt"], nonce=f_["nonce"])
    out[f"ticket/{t['name']}/ticket"] = ticket
    out[f"ticket/{t['name']}/signature"] = sig
for m in v["systemMessages"]:
    out[f"sysmsg/{m['name']}/signature"] = sign_system_message(
        m["secret"], m["integratorId"], m["conversationId"], m["body"], m["timestamp"])["signature"]
for c in v["webhook"]["cases"]:
    out[f"webhook/{c['name']}"] = verify_webhook(v["webhook"]["secret"], c["header"], c["body"].encode(),
                                                 c["now"], v["webhook"]["toleranceSeconds"])
print(json.dumps(out, ensure_ascii=False))
