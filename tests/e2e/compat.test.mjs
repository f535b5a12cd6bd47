// Drop-in for the original Chats3 service, in Chromium: a page on an integrator's allowed origin
// calls the API cross-origin with credentials (CORS preflight answered, answers readable, the event
// stream opened with a stream token) while a page on another origin gets nothing; a plain
// `<iframe src="/embed?…">` as the original's integrators wrote it hides Call, Record and Leave,
// obeys the original's `{type: 'leave'}` from the host only, and the SDK's `features` brings the
// controls back; an https `avatarUrl` is shown, fetched without a referrer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Server, launch, freePort, makePng, sleep, waitRoom } from './lib.mjs';
import { signTicket } from '../sdk-vectors/sign.mjs';

const SECRET = 'shop-e2e-secret-0123456789';
const AVATAR = 'https://avatars.example.test/ada.png';

let server, browser, allowed, foreign;

/** A site serving a blank page at `/` on http://localhost:PORT. */
async function site() {
  const port = await freePort();
  const s = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>host</title><h1>host</h1><div id="chat"></div>');
  });
  await new Promise((res) => s.listen(port, '127.0.0.1', res));
  s.origin = `http://localhost:${port}`;
  return s;
}

function ticketFor(conversationId, userId, displayName, extra = {}) {
  return signTicket(SECRET, { integratorId: 'shop', conversationId, userId, displayName, origin: allowed.origin, ...extra });
}

async function hostPage(origin) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  const page = await context.newPage();
  await page.goto(`${origin}/`);
  return { context, page };
}

before(async () => {
  allowed = await site();
  foreign = await site();
  server = await Server.start('compat', {
    env: { INTEGRATORS: JSON.stringify([{ id: 'shop', secret: SECRET, allowedOrigins: [allowed.origin] }]) },
  });
  browser = await launch();
});

after(async () => {
  await browser?.close();
  allowed?.close();
  foreign?.close();
  await server?.dispose();
});

/** In the page: trade a ticket with a credentialed, preflighted fetch, read the session, open the stream. */
async function callFromPage(page, base, t) {
  return page.evaluate(async ({ base, t }) => {
    try {
      const opts = (init) => ({ credentials: 'include', ...init });
      const embed = await fetch(`${base}/api/v1/embed`, opts({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(t) }));
      const { details } = await embed.json();
      const headers = { 'x-session-id': details.sessionId };
      const me = await (await fetch(`${base}/api/v1/session`, opts({ headers }))).json();
      const token = (await (await fetch(`${base}/api/v1/signaling/token`, opts({ method: 'POST', headers }))).json()).details.token;
      // The EventSource snippet of docs/migrating.md: no session id in the URL.
      const first = await new Promise((resolve, reject) => {
        const es = new EventSource(`${base}/api/v1/signaling?token=${encodeURIComponent(token)}`, { withCredentials: true });
        es.onmessage = (e) => {
          es.close();
          resolve(JSON.parse(e.data));
        };
        es.onerror = () => {
          es.close();
          reject(new Error('event stream failed'));
        };
      });
      return { ok: true, status: embed.status, userId: me.details.userId, first };
    } catch (err) {
      return { ok: false, error: `${err.name}: ${err.message}` };
    }
  }, { base, t });
}

test('CORS: the allowed origin calls the API with credentials; another origin can neither send nor read', async () => {
  const { context, page } = await hostPage(allowed.origin);
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const preflights = [];
  cdp.on('Network.requestWillBeSent', (e) => {
    if (e.request.method === 'OPTIONS' || e.type === 'Preflight') preflights.push(e.request.url);
  });
  const got = await callFromPage(page, server.url, ticketFor('cors-room', 'ann', 'Ann'));
  assert.deepEqual({ ok: got.ok, status: got.status, userId: got.userId }, { ok: true, status: 200, userId: 'ann' }, JSON.stringify(got));
  assert.deepEqual(got.first, { ...got.first, type: 'system', data: 'connected', toUserId: null });
  console.log(`  preflights seen by Chromium: ${preflights.length}`);
  await context.close();

  // The foreign page: the preflight gets no Access-Control-Allow-Origin, so Chromium never sends
  // the POST (the ticket stays unused), and a simple GET's answer cannot be read.
  const other = await hostPage(foreign.origin);
  const t = ticketFor('cors-room', 'bob', 'Bob');
  const refused = await callFromPage(other.page, server.url, t);
  assert.equal(refused.ok, false);
  assert.match(refused.error, /TypeError/);
  const read = await other.page.evaluate(async (base) => {
    try {
      await (await fetch(`${base}/api/v1/conversation`, { credentials: 'include' })).json();
      return 'read';
    } catch (err) {
      return err.name;
    }
  }, server.url);
  assert.equal(read, 'TypeError');
  const unused = await fetch(`${server.url}/api/v1/embed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(t) });
  assert.equal(unused.status, 200, 'the foreign page\'s POST was never sent, so its ticket is still unused');
  await other.context.close();
});

test('a plain iframe hides Call, Record and Leave; the host leaves with {type: "leave"}, other frames cannot', async () => {
  const { context, page } = await hostPage(allowed.origin);
  const avatarReferers = [];
  await context.route('https://avatars.example.test/**', (route) => {
    avatarReferers.push(route.request().headers().referer ?? null);
    return route.fulfill({ status: 200, contentType: 'image/png', body: makePng(32, 32) });
  });
  const { ticket, signature } = ticketFor('plain-room', 'ada', 'Ada Lovelace', { avatarUrl: AVATAR });
  const src = `${server.url}/embed?${new URLSearchParams({ ticket, signature })}`;
  await page.evaluate((u) => {
    const f = document.createElement('iframe');
    f.src = u;
    f.width = '900';
    f.height = '600';
    f.allow = 'camera; microphone; display-capture';
    document.getElementById('chat').append(f);
  }, src);
  const frame = await waitRoom(page, server);
  for (const id of ['call-btn', 'record-btn', 'leave-btn']) {
    assert.equal(await frame.locator(`#${id}`).isVisible(), false, `#${id} is shown in a frame without features`);
  }

  // The avatar from the ticket: drawn over the initials, fetched without a Referer.
  const box = frame.getByLabel('Message', { exact: true });
  await box.fill('Hello with a face');
  await box.press('Enter');
  const img = frame.locator('#message-list .msg-meta .avatar img');
  await img.first().waitFor();
  await frame.waitForFunction(() => [...document.querySelectorAll('.msg-meta .avatar img')].some((i) => i.complete && i.naturalWidth === 32));
  assert.equal(await img.first().getAttribute('referrerpolicy'), 'no-referrer');
  assert.equal(await img.first().getAttribute('src'), AVATAR);
  assert.ok(avatarReferers.length >= 1 && avatarReferers.every((r) => r === null), JSON.stringify(avatarReferers));

  // The original's leave message, from a frame of another origin: ignored.
  await page.evaluate((u) => new Promise((res) => {
    const f = document.createElement('iframe');
    f.src = u;
    f.onload = res;
    document.body.append(f);
  }), `${foreign.origin}/`);
  const sibling = page.frames().find((f) => f.url() === `${foreign.origin}/`);
  await sibling.evaluate(() => parent.frames[0].postMessage({ type: 'leave' }, '*'));
  await sleep(700);
  assert.equal(await frame.locator('#composer-input').isDisabled(), false, 'a foreign frame made the room leave');

  // From the host page itself, exactly as the original's integrators wrote it.
  await page.evaluate(() => document.querySelector('#chat iframe').contentWindow.postMessage({ type: 'leave' }, '*'));
  await frame.waitForFunction(() => /left the conversation/.test(document.getElementById('banner').textContent));
  assert.equal(await frame.locator('#composer-input').isDisabled(), true);
  await context.close();
});

test('the SDK\'s features option shows the controls the host asks for', async () => {
  const { context, page } = await hostPage(allowed.origin);
  await page.addScriptTag({ url: `${server.url}/static/embed.js` });
  const { ticket, signature } = ticketFor('sdk-room', 'cy', 'Cy');
  await page.evaluate(({ baseUrl, ticket, signature }) => {
    window.Chats3.mount(document.getElementById('chat'), { baseUrl, ticket, signature, features: { call: true, leave: true } });
  }, { baseUrl: server.url, ticket, signature });
  const frame = await waitRoom(page, server);
  assert.equal(new URL(frame.url()).searchParams.get('f'), 'call,leave');
  assert.equal(await frame.locator('#call-btn').isVisible(), true);
  assert.equal(await frame.locator('#leave-btn').isVisible(), true);
  assert.equal(await frame.locator('#record-btn').getAttribute('hidden'), '', 'record stays off');
  await context.close();
});
