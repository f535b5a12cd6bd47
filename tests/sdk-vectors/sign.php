<?php
// chats3 signing helpers for PHP 7.3+ (no extensions beyond the defaults).

/** base64url (no padding) HMAC-SHA256: the signature format of tickets and system messages. */
function chats3_hmac_base64url(string $secret, string $data): string
{
    return rtrim(strtr(base64_encode(hash_hmac('sha256', $data, $secret, true)), '+/', '-_'), '=');
}

/** Serializes like JavaScript's JSON.stringify: "/" and non-ASCII (even U+2028) kept as they are. */
function chats3_json(array $value): string
{
    return json_encode($value, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE
        | JSON_UNESCAPED_LINE_TERMINATORS | JSON_THROW_ON_ERROR);
}

/** Builds an embed ticket and signs its exact bytes. Send both strings unchanged. */
function chats3_sign_ticket(string $secret, array $c): array
{
    $issuedAt = $c['issuedAt'] ?? (int) floor(microtime(true) * 1000);
    $claims = [
        'integratorId' => $c['integratorId'],
        'conversationId' => $c['conversationId'],
        'userId' => $c['userId'],
        'displayName' => $c['displayName'],
    ];
    if (!empty($c['avatarUrl'])) {
        $claims['avatarUrl'] = $c['avatarUrl'];
    }
    $claims += [
        'role' => $c['role'] ?? 'participant',
        'origin' => $c['origin'],
        'issuedAt' => $issuedAt,
        'expiresAt' => $c['expiresAt'] ?? $issuedAt + 60000,
        'nonce' => $c['nonce'] ?? bin2hex(random_bytes(16)),
    ];
    $ticket = chats3_json($claims);
    return ['ticket' => $ticket, 'signature' => chats3_hmac_base64url($secret, $ticket)];
}

/** The JSON body of POST /api/v1/system-message, signed. */
function chats3_sign_system_message(string $secret, string $integratorId, string $conversationId,
                                    string $body, ?int $timestamp = null): array
{
    $msg = [
        'integratorId' => $integratorId,
        'conversationId' => $conversationId,
        'body' => $body,
        'timestamp' => $timestamp ?? (int) floor(microtime(true) * 1000),
    ];
    return $msg + ['signature' => chats3_hmac_base64url($secret, chats3_json($msg))];
}

/** Checks X-Chats3-Signature ("t=<unix s>,v1=<hex>") against the raw request body. */
function chats3_verify_webhook(string $secret, string $header, string $rawBody,
                               ?int $now = null, int $tolerance = 300): bool
{
    $t = null;
    $candidates = [];
    foreach (explode(',', $header) as $part) {
        $kv = explode('=', trim($part), 2);
        if (count($kv) === 2 && $kv[0] === 't' && ctype_digit($kv[1])) {
            $t = $kv[1];
        } elseif (count($kv) === 2 && $kv[0] === 'v1') {
            $candidates[] = $kv[1];
        }
    }
    if ($t === null || abs(($now ?? time()) - (int) $t) > $tolerance) {
        return false;
    }
    $expected = hash_hmac('sha256', $t . '.' . $rawBody, $secret);
    foreach ($candidates as $c) {
        if (hash_equals($expected, $c)) {
            return true;
        }
    }
    return false;
}
