// A tiny integrator site that embeds chats3 — no dependencies: `node server.mjs`.
//
// It serves a host page on its own origin, mints embed tickets server-side (the integrator
// secret never reaches the browser), and the page mounts the chat with chats3's embed.js.
//
//   CHATS3_URL          where chats3 runs                  (default http://127.0.0.1:3000)
//   INTEGRATOR_ID       your integrator id in chats3       (default acme)
//   INTEGRATOR_SECRET   its shared secret                  (required)
//   PORT                this site's port                   (default 8080)
//   HOST_ORIGIN         this site's origin as the browser sees it (default http://localhost:PORT);
//                       it must be in the integrator's allowedOrigins
//   CONVERSATION        the conversation to open           (default demo-room)
import http from 'node:http';
import crypto from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

const PORT = Number(process.env.PORT || 8080);
const CHATS3_URL = new URL(process.env.CHATS3_URL || 'http://127.0.0.1:3000').origin;
const INTEGRATOR_ID = process.env.INTEGRATOR_ID || 'acme';
const SECRET = process.env.INTEGRATOR_SECRET;
const HOST_ORIGIN = process.env.HOST_ORIGIN || `http://localhost:${PORT}`;
const CONVERSATION = process.env.CONVERSATION || 'demo-room';
if (!SECRET) {
  console.error('Set INTEGRATOR_SECRET (the secret of INTEGRATOR_ID in the chats3 config).');
  process.exit(1);
}

// Same code as the guide's Node snippet (docs/integrators.md).
function signTicket(secret, c) {
  const issuedAt = Date.now();
  const ticket = JSON.stringify({
    integratorId: c.integratorId,
    conversationId: c.conversationId,
    userId: c.userId,
    displayName: c.displayName,
    role: c.role ?? 'participant',
    origin: c.origin,
    issuedAt,
    expiresAt: issuedAt + 60_000,
    nonce: crypto.randomUUID(),
  });
  return { ticket, signature: crypto.createHmac('sha256', secret).update(ticket).digest('base64url') };
}

const publicDir = fileURLToPath(new URL('./public/', import.meta.url));
const files = { '/host.js': 'text/javascript', '/host.css': 'text/css' };

function html(res, status, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(body);
}

const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, HOST_ORIGIN);
  try {
    if (url.pathname === '/') {
      const page = (await readFile(publicDir + 'index.html', 'utf8')).replaceAll('{{CHATS3_URL}}', escapeHtml(CHATS3_URL));
      return html(res, 200, page);
    }
    if (files[url.pathname]) {
      res.writeHead(200, { 'content-type': files[url.pathname], 'cache-control': 'no-cache' });
      return res.end(await readFile(publicDir + url.pathname.slice(1)));
    }
    if (url.pathname === '/api/ticket' && req.method === 'POST') {
      // In a real site the user comes from your own login session, never from the request.
      const name = (url.searchParams.get('name') || 'Guest').slice(0, 40);
      const userId = url.searchParams.get('user') || `guest-${crypto.randomUUID().slice(0, 8)}`;
      const conversationId = url.searchParams.get('conversation') || CONVERSATION;
      const signed = signTicket(SECRET, { integratorId: INTEGRATOR_ID, conversationId, userId, displayName: name, origin: HOST_ORIGIN });
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      return res.end(JSON.stringify({ baseUrl: CHATS3_URL, ...signed }));
    }
    return html(res, 404, 'Not found');
  } catch (err) {
    console.error(err);
    return html(res, 500, 'Server error');
  }
});

server.listen(PORT, '127.0.0.1', () => {
  console.log(`host page: ${HOST_ORIGIN}/  (embeds ${CHATS3_URL} as integrator ${INTEGRATOR_ID})`);
});
