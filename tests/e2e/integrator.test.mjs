// The integrator's experience, as docs/integrators.md promises it: the guide's section 6 page, script
// and backend route, served exactly as written, open the chat without a baseUrl (embed.js finds chats3
// from its own <script src>); a refused ticket shows a readable message in the frame and reaches the
// host as `error {code: 'ticket', reason}` (and the chats3 log, at warn, without the ticket); a used
// handoff code reaches the host as `error {code: 'handoff'}` though the frame never learnt its origin
// (errors only, no command obeyed); `message` events say what they are (`kind`, `senderUserId`) and
// `unread` counts only what a person would call unread; `height: 'auto'` follows the room's content
// within minHeight/maxHeight. The host site is
// http://localhost:P1 and chats3 http://127.0.0.1:P2 (two sites), with third-party cookies blocked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { join } from 'node:path';
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { Server, CHROMIUM_ARGS, ROOT, ARTIFACTS, freePort, sleep, waitRoom } from './lib.mjs';
import { signTicket, signSystemMessage } from '../sdk-vectors/sign.mjs';

const SECRET = 'acme-integrator-e2e-secret-0123';
let server, browser, site, hostOrigin, snippetDir;
let guideUser = { id: 'ada', name: 'Ada', orderId: 1234 }; // "your login session" for the guide's route

/** The fenced code blocks of the guide whose first line starts with `firstLine`. */
function guideBlock(firstLine) {
  const md = readFileSync(join(ROOT, 'docs/integrators.md'), 'utf8');
  const blocks = [...md.matchAll(/```[a-z]*\n([\s\S]*?)```/g)].map((m) => m[1]);
  const found = blocks.filter((b) => b.startsWith(firstLine));
  assert.equal(found.length, 1, `exactly one block of docs/integrators.md starts with ${firstLine}`);
  return found[0];
}

function ticketFor(conversationId, userId, displayName, extra = {}) {
  return signTicket(SECRET, { integratorId: 'acme', conversationId, userId, displayName, origin: hostOrigin, ...extra });
}

/** A second participant, joined by API (POST /api/v1/embed), as the guide's section 4 describes. */
async function joinByApi(conversationId, userId, displayName) {
  const res = await fetch(`${server.url}/api/v1/embed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(ticketFor(conversationId, userId, displayName)) });
  const json = await res.json();
  assert.equal(res.status, 200, JSON.stringify(json));
  return json.details.sessionId;
}

const say = (sessionId, body) => server.api('POST', '/api/v1/messages', { type: 'text', body, clientTimestamp: new Date().toISOString() }, sessionId);

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.setCookieControls', { enableThirdPartyCookieRestriction: true, disableThirdPartyCookieMetadata: true, disableThirdPartyCookieHeuristics: true });
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  return { context, page };
}

/**
 * On the bare host page (which loads embed.js with a <script src>): mounts one chat into a new box and
 * records its events in window.mounts[i].events. Returns i.
 */
function mount(page, options) {
  return page.evaluate((opts) => {
    window.mounts = window.mounts || [];
    const box = document.createElement('div');
    document.body.append(box);
    const events = [];
    const chat = window.Chats3.mount(box, { ...opts, onEvent: (e) => events.push(e) });
    window.mounts.push({ chat, events });
    return window.mounts.length - 1;
  }, options);
}

function events(page, i, type) {
  return page.evaluate(([n, t]) => window.mounts[n].events.filter((e) => !t || e.type === t), [i, type]);
}

function waitEvent(page, i, predicateSource, arg, timeout = 15000) {
  return page.waitForFunction(
    ([n, src, a]) => new Function('events', 'arg', `return (${src})(events, arg)`)(window.mounts[n].events, a),
    [i, predicateSource.toString(), arg],
    { timeout },
  );
}

before(async () => {
  const hostPort = await freePort();
  hostOrigin = `http://localhost:${hostPort}`;
  server = await Server.start('integrator', {
    env: { INTEGRATORS: JSON.stringify([{ id: 'acme', secret: SECRET, allowedOrigins: [hostOrigin] }]) },
  });
  // The guide's backend route, as written, next to the guide's sign.mjs (section 5); only the example
  // origin becomes this test's host origin.
  snippetDir = mkdtempSync(join(tmpdir(), 'chats3-guide-'));
  copyFileSync(join(ROOT, 'tests/sdk-vectors/sign.mjs'), join(snippetDir, 'sign.mjs'));
  const route = guideBlock('// chat-ticket.mjs').replaceAll('https://shop.example.com', hostOrigin);
  writeFileSync(join(snippetDir, 'chat-ticket.mjs'), route);
  process.env.CHATS3_SECRET = SECRET;
  const { chatTicket } = await import(pathToFileURL(join(snippetDir, 'chat-ticket.mjs')).href);
  const pageHtml = guideBlock('<!-- your page').replaceAll('https://chat.example.net', server.url);
  const myChat = guideBlock('// my-chat.js');
  const doc = (body) => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Shop</title></head><body><h1>Order 1234</h1>${body}</body></html>`;
  site = http.createServer((req, res) => {
    const path = new URL(req.url, hostOrigin).pathname;
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(doc(pageHtml));
    }
    if (path === '/my-chat.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      return res.end(myChat);
    }
    if (path === '/api/chat-ticket' && req.method === 'POST') return chatTicket(req, res, guideUser);
    if (path === '/bare') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(doc(`<script src="${server.url}/static/embed.js"></script>`));
    }
    res.writeHead(404);
    return res.end();
  });
  await new Promise((res) => site.listen(hostPort, '127.0.0.1', res));
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: [...CHROMIUM_ARGS, '--test-third-party-cookie-phaseout'] });
});

after(async () => {
  await browser?.close();
  site?.close();
  await server?.dispose();
  if (snippetDir) rmSync(snippetDir, { recursive: true, force: true });
});

test("the guide's section 6 page, script and backend route, served as written, open the chat without a baseUrl", async () => {
  const { context, page } = await newPage();
  const logged = [];
  page.on('console', (m) => {
    if (m.text().startsWith('chats3')) m.args()[1]?.jsonValue().then((e) => logged.push(e), () => {});
  });
  guideUser = { id: 'ada', name: 'Ada', orderId: 1234 };
  await page.goto(`${hostOrigin}/`);
  const frame = await waitRoom(page, server);
  assert.equal(new URL(frame.url()).origin, server.url);
  assert.equal(await page.evaluate(() => window.Chats3.baseUrl), server.url, 'the default baseUrl is where embed.js came from');
  for (let i = 0; i < 100 && !logged.some((e) => e && e.type === 'ready'); i += 1) await sleep(100);
  const ready = logged.find((e) => e && e.type === 'ready');
  assert.deepEqual({ conversationId: ready?.conversationId, userId: ready?.userId }, { conversationId: 'order-1234', userId: 'ada' });

  // The badge the snippet declares counts what Bob writes while Ada looks at the shop page.
  await page.locator('h1').click();
  await frame.waitForFunction(() => !document.hasFocus());
  const bob = await joinByApi('order-1234', 'bob', 'Bob');
  await say(bob, 'Your parcel left the warehouse');
  await page.waitForFunction(() => document.getElementById('chat-badge').textContent === '1 new', null, { timeout: 15000 });
  await frame.locator('#composer-input').click();
  await page.waitForFunction(() => document.getElementById('chat-badge').textContent === '');
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('a tampered, an expired and a reused ticket: the frame says why and the host gets error {code: "ticket", reason}', async () => {
  const { context, page } = await newPage();
  await page.goto(`${hostOrigin}/bare`);
  const good = ticketFor('refused-room', 'eve', 'Eve');
  const tampered = { ticket: good.ticket.replace('"Eve"', '"Admin"'), signature: good.signature };
  const now = Date.now();
  const expired = ticketFor('refused-room', 'eve', 'Eve', { issuedAt: now - 200_000, expiresAt: now - 100_000 });
  const cases = [
    [tampered, 'bad_signature', /not valid/],
    [expired, 'expired', /expired/],
    [good, null, null], // opens the room …
    [good, 'replayed', /already used/], // … and cannot open it again
  ];
  for (const [t, reason, text] of cases) {
    const i = await mount(page, { ticket: t.ticket, signature: t.signature, height: 'auto', maxHeight: 500 });
    if (!reason) {
      await waitEvent(page, i, (ev) => ev.some((e) => e.type === 'ready'));
      continue;
    }
    await waitEvent(page, i, (ev) => ev.some((e) => e.type === 'error'));
    const [err] = await events(page, i, 'error');
    assert.deepEqual({ code: err.code, reason: err.reason }, { code: 'ticket', reason });
    assert.match(err.message, text);
    // The frame shows it, readably, at the chats3 /embed URL (no redirect, no blank box).
    const src = await page.evaluate((n) => window.mounts[n].chat.iframe.src, i);
    const frame = page.frames().find((f) => f.url() === src);
    assert.ok(frame, `no frame at ${src}`);
    await frame.locator('#refused-message').waitFor();
    const shown = await frame.locator('main').innerText();
    assert.match(shown, /The chat could not be opened/);
    assert.match(shown, text);
    assert.match(shown, new RegExp(`Reason: ${reason}`));
    assert.equal(await frame.locator('#refused-message').isVisible(), true);
    // It reports its own height, so an auto-sized frame shows the whole message.
    await waitEvent(page, i, (ev) => ev.some((e) => e.type === 'resize' && e.height > 100));
    assert.deepEqual(await events(page, i, 'ready'), []);
  }

  // The chats3 log says so at warn, with the integrator and the reason, never the ticket or signature.
  const logFile = join(ARTIFACTS, 'integrator-server-1.log');
  let log = '';
  for (let i = 0; i < 50; i += 1) {
    log = readFileSync(logFile, 'utf8').replace(/\x1b\[[0-9;]*m/g, '');
    if (/embed ticket refused.*reason="?replayed/.test(log)) break;
    await sleep(100);
  }
  for (const reason of ['bad_signature', 'expired', 'replayed']) {
    assert.match(log, new RegExp(`WARN.*embed ticket refused.*integrator="?acme"?.*reason="?${reason}`), log);
  }
  for (const secret of [good.signature, expired.signature, good.ticket, JSON.stringify(good.ticket)]) assert.ok(!log.includes(secret), 'a ticket or signature in the log');
  await context.close();
});

test('a handoff code already used (the frame restored from history): the frame says so and the host gets error {code: "handoff"}, and nothing else goes out', async () => {
  const { context, page } = await newPage();
  await page.goto(`${hostOrigin}/bare`);
  // GET /embed as the frame would, then trade its handoff code ourselves: the room gets a used code
  // in a fresh frame, with third-party storage blocked, so it has never learnt the host's origin.
  const nav = await fetch(`${server.url}/embed?${new URLSearchParams(ticketFor('handoff-room', 'hal', 'Hal'))}`, { redirect: 'manual' });
  assert.ok([302, 303].includes(nav.status), `GET /embed answered ${nav.status}`);
  const src = new URL(nav.headers.get('location'), server.url).href;
  const code = new URL(src).searchParams.get('h');
  assert.ok(code, `no handoff code in ${src}`);
  const traded = await fetch(`${server.url}/api/v1/embed/handoff`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code }) });
  assert.equal(traded.status, 200, await traded.clone().text());

  const i = await mount(page, { src, height: 'auto' });
  await waitEvent(page, i, (ev) => ev.some((e) => e.type === 'error'));
  const [err] = await events(page, i, 'error');
  assert.equal(err.code, 'handoff', JSON.stringify(err));
  assert.equal(typeof err.message, 'string');
  const frame = page.frames().find((f) => f.url().startsWith(`${server.url}/room/handoff-room`));
  assert.ok(frame, 'no room frame');
  await frame.waitForFunction(() => /This chat session has ended/.test(document.getElementById('banner').textContent));
  // Its height, so an auto-sized frame shows the banner.
  await waitEvent(page, i, (ev) => ev.some((e) => e.type === 'resize' && e.height > 0));
  // Chromium names the parent (location.ancestorOrigins), but only for errors: the frame obeys no command.
  assert.deepEqual(await frame.evaluate(() => window.chats3Debug.embedded), { hostOrigin, errorsOnly: true });
  await page.evaluate((n) => {
    const w = window.mounts[n].chat.iframe.contentWindow;
    w.postMessage({ target: 'chats3', command: 'setTheme', theme: 'dark' }, '*');
    w.postMessage({ target: 'chats3', command: 'nonsense' }, '*');
    w.postMessage({ type: 'leave' }, '*');
  }, i);
  await sleep(1000);
  assert.equal(await frame.evaluate(() => document.documentElement.dataset.theme ?? null), null, 'setTheme obeyed');
  assert.match(await frame.locator('#banner').innerText(), /This chat session has ended/, 'leave obeyed');
  const types = [...new Set((await events(page, i)).map((e) => e.type))].sort();
  assert.deepEqual(types, ['error', 'resize']);
  assert.ok(!(await events(page, i, 'error')).some((e) => e.code === 'bad-command'), 'a command was read');
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('message events carry kind and sender; a join notice does not raise unread, the integrator\'s notice does', async () => {
  const { context, page } = await newPage();
  await page.goto(`${hostOrigin}/bare`);
  const conv = 'kinds-room';
  const ada = ticketFor(conv, 'ada', 'Ada');
  const i = await mount(page, { ticket: ada.ticket, signature: ada.signature });
  await waitEvent(page, i, (ev) => ev.some((e) => e.type === 'ready'));
  const frame = await waitRoom(page, server);
  await page.locator('h1').click();
  await frame.waitForFunction(() => !document.hasFocus());
  const unread = async () => (await events(page, i, 'unread')).at(-1)?.count ?? 0;
  assert.equal(await unread(), 0);

  // Bob comes in: "Bob joined the conversation" is a `join`, not news.
  const bob = await joinByApi(conv, 'bob', 'Bob');
  await waitEvent(page, i, (ev) => ev.some((e) => e.type === 'message' && e.kind === 'join'));
  const join = (await events(page, i, 'message')).find((e) => e.kind === 'join');
  assert.deepEqual({ senderUserId: join.senderUserId, messageType: join.messageType, mine: join.mine }, { senderUserId: 'system', messageType: 'system', mine: false });
  assert.equal(join.body, undefined);
  await sleep(500);
  assert.equal(await unread(), 0, 'a join line raised unread');

  // Bob writes: text from bob, unread 1.
  await say(bob, 'Hello Ada');
  await waitEvent(page, i, (ev) => ev.some((e) => e.type === 'unread' && e.count === 1));
  const text = (await events(page, i, 'message')).find((e) => e.kind === 'text');
  assert.deepEqual({ senderUserId: text.senderUserId, senderDisplayName: text.senderDisplayName, mine: text.mine }, { senderUserId: 'bob', senderDisplayName: 'Bob', mine: false });

  // The integrator's signed notice counts: unread 2.
  const notice = signSystemMessage(SECRET, { integratorId: 'acme', conversationId: conv, body: 'Order #1234 has shipped' });
  const res = await fetch(`${server.url}/api/v1/system-message`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(notice) });
  assert.equal(res.status, 200, await res.clone().text());
  await waitEvent(page, i, (ev) => ev.some((e) => e.type === 'unread' && e.count === 2));
  const integrator = (await events(page, i, 'message')).find((e) => e.kind === 'integrator');
  assert.deepEqual({ senderUserId: integrator.senderUserId, messageType: integrator.messageType }, { senderUserId: 'system', messageType: 'system' });

  // Bob leaves: a `leave`, and still 2.
  await server.api('POST', '/api/v1/leave', undefined, bob);
  await waitEvent(page, i, (ev) => ev.some((e) => e.type === 'message' && e.kind === 'leave'));
  await sleep(500);
  assert.equal(await unread(), 2, 'a leave line raised unread');

  // Ada's own message: `text`, mine, never unread; back in the chat the count is 0.
  await frame.locator('#composer-input').click();
  await waitEvent(page, i, (ev) => ev.filter((e) => e.type === 'unread').at(-1).count === 0);
  const box = frame.getByLabel('Message', { exact: true });
  await box.fill('Thanks!');
  await box.press('Enter');
  await waitEvent(page, i, (ev) => ev.some((e) => e.type === 'message' && e.mine && e.kind === 'text' && e.senderUserId === 'ada'));
  assert.deepEqual(page.errors, []);
  await context.close();
});

test("height: 'auto' follows the room's content and stops at maxHeight, where the list scrolls", async () => {
  const { context, page } = await newPage();
  await page.goto(`${hostOrigin}/bare`);
  const conv = 'auto-room';
  const ada = ticketFor(conv, 'ada', 'Ada');
  const i = await mount(page, { ticket: ada.ticket, signature: ada.signature, height: 'auto', minHeight: 260, maxHeight: 700 });
  await waitEvent(page, i, (ev) => ev.some((e) => e.type === 'ready'));
  const frame = await waitRoom(page, server);
  const frameHeight = () => page.evaluate((n) => Math.round(window.mounts[n].chat.iframe.getBoundingClientRect().height), i);
  const lastResize = async () => (await events(page, i, 'resize')).at(-1)?.height;
  const clamp = (h) => Math.min(700, Math.max(260, h));
  // Settled: the frame is as tall as the room asks (a fresh room asks for little).
  for (let k = 0; k < 50 && Math.abs((await frameHeight()) - clamp(await lastResize())) > 1; k += 1) await sleep(100);
  const h0 = await frameHeight();
  assert.ok(h0 >= 260 && h0 < 600, `a fresh room's frame is ${h0}px (resize said ${await lastResize()})`);
  assert.ok(Math.abs(h0 - clamp(await lastResize())) <= 1, `frame ${h0}px, resize ${await lastResize()}px`);

  // Bob writes a few lines: the frame grows with them and the list does not scroll.
  const bob = await joinByApi(conv, 'bob', 'Bob');
  for (let k = 1; k <= 5; k += 1) await say(bob, `Line ${k} of a conversation that grows`);
  await frame.waitForFunction(() => window.chats3Debug.messages().filter((m) => m.senderUserId === 'bob').length === 5);
  await page.waitForFunction(([n, h]) => window.mounts[n].chat.iframe.getBoundingClientRect().height > h + 100, [i, h0], { timeout: 10000 });
  const h1 = await frameHeight();
  assert.ok(h1 < 700, `grew to ${h1}px`);
  const overflow = () => frame.evaluate(() => {
    const m = document.getElementById('messages');
    return m.scrollHeight - m.clientHeight;
  });
  // The frame follows the content after a resize round trip: wait for the layout to settle.
  let over = await overflow();
  for (let k = 0; k < 50 && over > 1; k += 1) {
    await sleep(100);
    over = await overflow();
  }
  assert.ok(over <= 1, `the list scrolls by ${over}px inside a frame that could grow`);

  // Many more: the frame stops at maxHeight, the room's preferred height goes on, the list scrolls.
  for (let k = 6; k <= 30; k += 1) await say(bob, `Line ${k}`);
  await frame.waitForFunction(() => window.chats3Debug.messages().filter((m) => m.senderUserId === 'bob').length === 30);
  await page.waitForFunction((n) => Math.round(window.mounts[n].chat.iframe.getBoundingClientRect().height) === 700, i, { timeout: 10000 });
  await page.waitForFunction((n) => window.mounts[n].events.filter((e) => e.type === 'resize').at(-1).height > 800, i, { timeout: 10000 });
  assert.ok((await overflow()) > 100, 'the list scrolls once the frame is at maxHeight');
  assert.deepEqual(page.errors, []);
  await context.close();
});
