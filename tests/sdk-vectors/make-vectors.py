#!/usr/bin/env python3
"""Writes vectors.json: fixed inputs, the expected strings written out by hand below (not
produced by any snippet), and signatures computed here with Python's hmac module. run.sh
re-checks every signature with a second implementation (Node's crypto, and openssl when
present) before comparing the snippets' outputs. Run once; commit the result."""
import base64
import hashlib
import hmac
import json
import os

SECRET = "acme-secret-0123456789abcdef"
WEBHOOK_SECRET = "acme-webhook-secret-0123456789"


def b64url(secret, data):
    mac = hmac.new(secret.encode(), data.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def hexmac(secret, data):
    return hmac.new(secret.encode(), data.encode(), hashlib.sha256).hexdigest()


tickets = [
    {
        "name": "basic",
        "secret": SECRET,
        "fields": {"integratorId": "acme", "conversationId": "support-42", "userId": "u-1001",
                   "displayName": "Ada Lovelace", "role": "participant",
                   "origin": "https://shop.example.com", "issuedAt": 1700000000000,
                   "expiresAt": 1700000060000, "nonce": "5f0c6a2e-9a77-4a7e-8f43-2d4b0a1c7e11"},
        "ticket": '{"integratorId":"acme","conversationId":"support-42","userId":"u-1001",'
                  '"displayName":"Ada Lovelace","role":"participant","origin":"https://shop.example.com",'
                  '"issuedAt":1700000000000,"expiresAt":1700000060000,'
                  '"nonce":"5f0c6a2e-9a77-4a7e-8f43-2d4b0a1c7e11"}',
    },
    {
        "name": "unicode-avatar-html",
        "secret": SECRET,
        "fields": {"integratorId": "acme", "conversationId": "room_7", "userId": "agent/9",
                   "displayName": "Zoë \"Z\" Ødegård <3 & 😀",
                   "avatarUrl": "https://cdn.example.com/a/zoë.png?size=64&v=2", "role": "agent",
                   "origin": "https://app.example.com:8443", "issuedAt": 1700000123456,
                   "expiresAt": 1700000183456, "nonce": "n-0002"},
        "ticket": '{"integratorId":"acme","conversationId":"room_7","userId":"agent/9",'
                  '"displayName":"Zoë \\"Z\\" Ødegård <3 & 😀",'
                  '"avatarUrl":"https://cdn.example.com/a/zoë.png?size=64&v=2","role":"agent",'
                  '"origin":"https://app.example.com:8443","issuedAt":1700000123456,'
                  '"expiresAt":1700000183456,"nonce":"n-0002"}',
    },
]

system_messages = [
    {"name": "plain", "secret": SECRET, "integratorId": "acme", "conversationId": "support-42",
     "body": "Order #1234 has shipped", "timestamp": 1700000000000,
     "signingString": '{"integratorId":"acme","conversationId":"support-42",'
                      '"body":"Order #1234 has shipped","timestamp":1700000000000}'},
    {"name": "escapes", "secret": SECRET, "integratorId": "acme", "conversationId": "support-42",
     "body": "Line \"one\"\nLine\ttwo \\ café ☕ </script> \u0001\u001f \b\f\r \u2028\u2029 end / 😀",
     "timestamp": 1700000000001,
     "signingString": '{"integratorId":"acme","conversationId":"support-42",'
                      '"body":"Line \\"one\\"\\nLine\\ttwo \\\\ café ☕ </script> \\u0001\\u001f \\b\\f\\r '
                      '\u2028\u2029 end / 😀","timestamp":1700000000001}'},
]

WEBHOOK_BODY = ('{"id":"evt_01","type":"message.created","createdAt":"2023-11-14T22:13:20.000Z",'
                '"integratorId":"acme","conversationId":"support-42",'
                '"data":{"messageId":"m-1","senderUserId":"u-1001","type":"text","body":"Hi ☕"}}')
T = 1700000000
good = f"t={T},v1={hexmac(WEBHOOK_SECRET, f'{T}.{WEBHOOK_BODY}')}"
webhooks = [
    {"name": "valid", "header": good, "body": WEBHOOK_BODY, "now": T + 10, "valid": True},
    {"name": "valid-clock-behind", "header": good, "body": WEBHOOK_BODY, "now": T - 300, "valid": True},
    {"name": "valid-second-signature", "header": f"t={T},v1={'0' * 64},v1={good.split('v1=')[1]}",
     "body": WEBHOOK_BODY, "now": T, "valid": True},
    {"name": "too-old", "header": good, "body": WEBHOOK_BODY, "now": T + 301, "valid": False},
    {"name": "from-the-future", "header": good, "body": WEBHOOK_BODY, "now": T - 301, "valid": False},
    {"name": "tampered-body", "header": good, "body": WEBHOOK_BODY.replace("Hi", "Ho"), "now": T, "valid": False},
    {"name": "other-timestamp", "header": good.replace(f"t={T}", f"t={T + 1}"), "body": WEBHOOK_BODY,
     "now": T, "valid": False},
    {"name": "wrong-secret", "header": f"t={T},v1={hexmac('another-secret-0123456789', f'{T}.{WEBHOOK_BODY}')}",
     "body": WEBHOOK_BODY, "now": T, "valid": False},
    {"name": "malformed", "header": "garbage", "body": WEBHOOK_BODY, "now": T, "valid": False},
    {"name": "empty", "header": "", "body": WEBHOOK_BODY, "now": T, "valid": False},
]

for t in tickets:
    assert json.loads(t["ticket"]) == t["fields"], t["name"]  # the hand-written string says what the fields say
    t["signature"] = b64url(t["secret"], t["ticket"])
for m in system_messages:
    assert json.loads(m["signingString"]) == {k: m[k] for k in ("integratorId", "conversationId", "body", "timestamp")}
    m["signature"] = b64url(m["secret"], m["signingString"])

out = {"_comment": "Generated by make-vectors.py; checked by run.sh. Timestamps: tickets and system messages in epoch ms, webhooks in unix seconds.",
       "tickets": tickets, "systemMessages": system_messages,
       "webhook": {"secret": WEBHOOK_SECRET, "toleranceSeconds": 300, "cases": webhooks}}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors.json")
with open(path, "w", encoding="utf-8") as f:
    json.dump(out, f, indent=2, ensure_ascii=False)
    f.write("\n")
print(f"wrote {path}")
