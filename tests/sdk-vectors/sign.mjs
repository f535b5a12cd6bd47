// chats3 signing helpers for Node.js 16+ (no dependencies).
import crypto from 'node:crypto';

/** base64url (no padding) HMAC-SHA256: the signature format of tickets and system messages. */
export function hmacBase64url(secret, data) {
  return crypto.createHmac('sha256', secret).update(data, 'utf8').digest('base64url');
}

/** Builds an embed ticket and signs its exact bytes. Send both strings unchanged. */
export function signTicket(secret, c) {
  const issuedAt = c.issuedAt ?? Date.now();
  const ticket = JSON.stringify({
    integratorId: c.integratorId,
    conversationId: c.conversationId,
    userId: c.userId,
    displayName: c.displayName,
    ...(c.avatarUrl ? { avatarUrl: c.avatarUrl } : {}),
    role: c.role ?? 'participant',
    origin: c.origin, // the host page's origin, e.g. https://shop.example.com
    issuedAt,
    expiresAt: c.expiresAt ?? issuedAt + 60_000,
    nonce: c.nonce ?? crypto.randomUUID(), // single-use
  });
  return { ticket, signature: hmacBase64url(secret, ticket) };
}

/** The JSON body of POST /api/v1/system-message, signed. */
export function signSystemMessage(secret, { integratorId, conversationId, body, timestamp = Date.now() }) {
  const signed = JSON.stringify({ integratorId, conversationId, body, timestamp });
  return { integratorId, conversationId, body, timestamp, signature: hmacBase64url(secret, signed) };
}

/** Checks X-Chats3-Signature ("t=<unix s>,v1=<hex>") against the raw request body. */
export function verifyWebhook(secret, header, rawBody, nowSeconds = Date.now() / 1000, toleranceSeconds = 300) {
  let t = null;
  const candidates = [];
  for (const part of String(header || '').split(',')) {
    const [k, v = ''] = part.trim().split('=');
    if (k === 't' && /^\d+$/.test(v)) t = v;
    if (k === 'v1' && /^[0-9a-f]{64}$/.test(v)) candidates.push(Buffer.from(v, 'hex'));
  }
  if (t === null || Math.abs(nowSeconds - Number(t)) > toleranceSeconds) return false;
  const expected = crypto.createHmac('sha256', secret).update(`${t}.`).update(rawBody).digest();
  return candidates.some((c) => crypto.timingSafeEqual(c, expected));
}
