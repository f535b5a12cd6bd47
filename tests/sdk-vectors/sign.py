# chats3 signing helpers for Python 3.8+ (standard library only).
import base64
import hashlib
import hmac
import json
import time
import uuid


def hmac_base64url(secret: str, data: str) -> str:
    """base64url (no padding) HMAC-SHA256: the signature format of tickets and system messages."""
    mac = hmac.new(secret.encode(), data.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def to_json(value) -> str:
    """Serializes like JavaScript's JSON.stringify: no spaces, non-ASCII kept as UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def sign_ticket(secret, integrator_id, conversation_id, user_id, display_name, origin,
                role="participant", avatar_url=None, issued_at=None, expires_at=None, nonce=None):
    """Builds an embed ticket and signs its exact bytes. Send both strings unchanged."""
    issued_at = int(time.time() * 1000) if issued_at is None else issued_at
    claims = {"integratorId": integrator_id, "conversationId": conversation_id,
              "userId": user_id, "displayName": display_name}
    if avatar_url:
        claims["avatarUrl"] = avatar_url
    claims.update({"role": role, "origin": origin, "issuedAt": issued_at,
                   "expiresAt": issued_at + 60_000 if expires_at is None else expires_at,
                   "nonce": nonce or str(uuid.uuid4())})
    ticket = to_json(claims)
    return ticket, hmac_base64url(secret, ticket)


def sign_system_message(secret, integrator_id, conversation_id, body, timestamp=None):
    """The JSON body of POST /api/v1/system-message, signed."""
    timestamp = int(time.time() * 1000) if timestamp is None else timestamp
    msg = {"integratorId": integrator_id, "conversationId": conversation_id,
           "body": body, "timestamp": timestamp}
    return {**msg, "signature": hmac_base64url(secret, to_json(msg))}


def verify_webhook(secret: str, header: str, raw_body: bytes, now=None, tolerance=300) -> bool:
    """Checks X-Chats3-Signature ("t=<unix s>,v1=<hex>") against the raw request body."""
    t, candidates = None, []
    for part in (header or "").split(","):
        k, _, v = part.strip().partition("=")
        if k == "t" and v.isdigit():
            t = v
        elif k == "v1":
            candidates.append(v)
    now = time.time() if now is None else now
    if t is None or abs(now - int(t)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), t.encode() + b"." + raw_body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, c) for c in candidates)
