// Embedding across origins: the example host page (examples/host-page, on http://localhost:P1)
// embeds chats3 (http://127.0.0.1:P2) with static/embed.js. The user chats inside the iframe with
// third-party cookies and third-party storage blocked, the host gets ready/unread/message events,
// host commands work, a host origin outside allowedOrigins can neither frame the room nor get a
// session, and the SDK ignores forged postMessages.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { chromium } from 'playwright-core';
import { Server, CHROMIUM_ARGS, ROOT, ADMIN_PASSWORD, freePort, startNodeServer, sleep, shot } from './lib.mjs';
import { signTicket } from '../sdk-vectors/sign.mjs';

const SECRET = 'acme-e2e-secret-0123456789';
const CONV = 'embed-e2e';
const HOST_SCRIPT = join(ROOT, 'examples/host-page/server.mjs');

let server, browser, host, evilHost, third, hostPort, evilPort, hooks;
const deliveries = []; // webhook POSTs received from chats3: {headers, body (raw string)}
let alice; // {context, page, requests}
const bob = {};

/** A third origin serving a blank page (the "other site" for forged messages and framing). */
function blankServer(port) {
  return new Promise((res) => {
    const s = http.createServer((req, r) => {
      r.writeHead(200, { 'content-type': 'text/html' });
      r.end('<!doctype html><title>other site</title><p>other site</p>');
    });
    s.listen(port, '127.0.0.1', () => res(s));
  });
}

/** Playwright contexts are incognito-like; we also switch on Chromium's third-party cookie restriction. */
async function blockedContext() {
  const context = await browser.newContext({ viewport: { width: 1200, height: 760 } });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.setCookieControls', { enableThirdPartyCookieRestriction: true, disableThirdPartyCookieMetadata: true, disableThirdPartyCookieHeuristics: true });
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  const requests = [];
  page.on('request', (r) => {
    if (r.url().startsWith(server.url)) requests.push(r);
  });
  return { context, page, requests };
}

function chatFrame(page) {
  return page.frames().find((f) => f.url().startsWith(`${server.url}/room/`));
}

async function waitChatFrame(page) {
  for (let i = 0; i < 200; i += 1) {
    const f = chatFrame(page);
    if (f) return f;
    await sleep(100);
  }
  throw new Error('the chat iframe never reached /room/');
}

function hostEvents(page, type) {
  return page.evaluate((t) => (window.hostDemo ? window.hostDemo.events.filter((e) => !t || e.type === t) : []), type);
}

function waitHostEvent(page, predicateSource, arg, timeout = 15000) {
  // predicateSource: (events, arg) => boolean, run in the page
  return page.waitForFunction(
    ([src, a]) => window.hostDemo && new Function('events', 'arg', `return (${src})(events, arg)`)(window.hostDemo.events, a),
    [predicateSource.toString(), arg],
    { timeout },
  );
}

before(async () => {
  hostPort = await freePort();
  evilPort = await freePort();
  hooks = await new Promise((res) => {
    const s = http.createServer((req, r) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        deliveries.push({ headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        r.writeHead(204);
        r.end();
      });
    });
    s.listen(0, '127.0.0.1', () => res(s));
  });
  const webhookUrl = `http://127.0.0.1:${hooks.address().port}/hooks/chats3`;
  server = await Server.start('embed', {
    env: { INTEGRATORS: JSON.stringify([{ id: 'acme', secret: SECRET, allowedOrigins: [`http://localhost:${hostPort}`], webhookUrl }]) },
  });
  const hostEnv = (port) => ({ PORT: String(port), CHATS3_URL: server.url, INTEGRATOR_ID: 'acme', INTEGRATOR_SECRET: SECRET, CONVERSATION: CONV });
  host = await startNodeServer(HOST_SCRIPT, { env: hostEnv(hostPort), url: `http://127.0.0.1:${hostPort}/`, name: 'embed-host-page' });
  evilHost = await startNodeServer(HOST_SCRIPT, { env: hostEnv(evilPort), url: `http://127.0.0.1:${evilPort}/`, name: 'embed-host-page-not-allowed' });
  third = await blankServer(await freePort());
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: [...CHROMIUM_ARGS, '--test-third-party-cookie-phaseout'] });
});

after(async () => {
  if (alice && alice.page.errors.length) console.log(alice.page.errors.join('\n'));
  await browser?.close();
  await host?.stop();
  await evilHost?.stop();
  third?.close();
  hooks?.close();
  await server?.dispose();
});

test('the host page on another origin embeds the room; the user chats inside it; ready, message and unread reach the host', async () => {
  alice = await blockedContext();
  const { page } = alice;
  await page.goto(`http://localhost:${hostPort}/?user=alice&name=Alice`);
  await waitHostEvent(page, (ev) => ev.some((e) => e.type === 'ready'));
  const frame = await waitChatFrame(page);
  await frame.waitForFunction(() => window.chats3Debug && window.chats3Debug.ready && window.chats3Debug.state.streamState === 'open', null, { timeout: 20000 });
  const ready = (await hostEvents(page, 'ready'))[0];
  assert.equal(ready.conversationId, CONV);
  assert.equal(ready.userId, 'alice');
  // The handoff code is gone from the address; the integrator id (which picks the CSP) stays.
  const roomUrl = new URL(frame.url());
  assert.equal(roomUrl.searchParams.get('h'), null);
  assert.equal(roomUrl.searchParams.get('i'), 'acme');
  assert.deepEqual(await frame.evaluate(() => window.chats3Debug.embedded), { hostOrigin: `http://localhost:${hostPort}` });
  // The iframe has the attributes the SDK promises.
  const attrs = await page.$eval('#chat iframe', (f) => ({ allow: f.getAttribute('allow'), title: f.title }));
  assert.equal(attrs.allow, 'camera; microphone; display-capture; clipboard-write');
  assert.equal(attrs.title, 'Support chat');

  // Chat inside the iframe.
  const box = frame.getByLabel('Message', { exact: true });
  await box.fill('Hello from the shop page');
  await box.press('Enter');
  await frame.waitForFunction(() => window.chats3Debug.messages().some((m) => m.body === 'Hello from the shop page' && m.seq !== undefined), null, { timeout: 15000 });
  await waitHostEvent(page, (ev) => ev.some((e) => e.type === 'message' && e.mine));
  for (const e of await hostEvents(page, 'message')) {
    assert.equal(e.body, undefined, 'message events carry metadata only');
    assert.ok(e.messageId && e.messageType && e.serverReceivedAt);
  }

  // Bob joins by API with his own ticket (POST /api/v1/embed) and writes while Alice looks at the shop page.
  const t = signTicket(SECRET, { integratorId: 'acme', conversationId: CONV, userId: 'bob', displayName: 'Bob', origin: `http://localhost:${hostPort}` });
  const res = await fetch(`${server.url}/api/v1/embed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(t) });
  const json = await res.json();
  assert.equal(res.status, 200, JSON.stringify(json));
  assert.equal(json.details.conversationId, CONV);
  bob.sessionId = json.details.sessionId;
  await page.locator('h1').click(); // focus leaves the iframe
  await frame.waitForFunction(() => !document.hasFocus());
  const before = (await hostEvents(page, 'unread')).at(-1)?.count ?? 0;
  for (const body of ['Hi Alice, Bob here', 'Your parcel ships today']) {
    const r = await server.api('POST', '/api/v1/messages', { type: 'text', body, clientTimestamp: new Date().toISOString() }, bob.sessionId);
    assert.equal(r.body, body);
  }
  await waitHostEvent(page, (ev, n) => ev.some((e) => e.type === 'unread' && e.count === n), before + 2);
  assert.equal(await page.locator('#unread').textContent(), `${before + 2} unread`);
  const fromBob = (await hostEvents(page, 'message')).filter((e) => e.senderDisplayName === 'Bob');
  assert.equal(fromBob.length, 2);
  await shot(page, 'embed-host-page');
  // Back in the chat: unread resets to 0.
  await frame.locator('#composer-input').click();
  await waitHostEvent(page, (ev) => ev.filter((e) => e.type === 'unread').at(-1).count === 0);
});

test('third-party cookies and storage blocked: no Cookie header ever reaches chats3 from the iframe, and the room still works', async () => {
  const { page, requests } = alice;
  const frame = chatFrame(page);
  // Evidence that the browser really blocks third-party state in this frame.
  const storage = await frame.evaluate(() => {
    try {
      sessionStorage.setItem('probe', '1');
      return 'available';
    } catch (e) {
      return `blocked (${e.name})`;
    }
  });
  console.log(`  sessionStorage in the chats3 iframe: ${storage}`);
  assert.ok(requests.length > 10, `saw ${requests.length} requests from the page to chats3`);
  const withCookie = [];
  for (const r of requests) {
    const h = await r.allHeaders().catch(() => ({}));
    if (h.cookie) withCookie.push(`${r.method()} ${r.url()}: ${h.cookie}`);
  }
  assert.deepEqual(withCookie, [], 'a request from the iframe carried a cookie');
  const apiCalls = requests.filter((r) => r.url().includes('/api/v1/'));
  assert.ok(apiCalls.some((r) => r.url().includes('/api/v1/embed/handoff')), 'the room took the handoff');
  assert.ok(apiCalls.some((r) => r.url().includes('/api/v1/signaling?')), 'the SSE stream was opened');
  // Still live both ways after all that: Bob writes, Alice answers.
  await server.api('POST', '/api/v1/messages', { type: 'text', body: 'Still there?', clientTimestamp: new Date().toISOString() }, bob.sessionId);
  await frame.waitForFunction(() => window.chats3Debug.messages().some((m) => m.body === 'Still there?'), null, { timeout: 15000 });
  const box = frame.getByLabel('Message', { exact: true });
  await box.fill('Yes, cookies are not needed');
  await box.press('Enter');
  await frame.waitForFunction(() => window.chats3Debug.messages().some((m) => m.body === 'Yes, cookies are not needed' && m.seq !== undefined), null, { timeout: 15000 });
});

test('host commands: setTheme, focus; resize events', async () => {
  const { page } = alice;
  const frame = chatFrame(page);
  await page.getByRole('button', { name: 'Dark' }).click();
  await frame.waitForFunction(() => document.documentElement.dataset.theme === 'dark');
  const bg = await frame.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, 'rgb(18, 20, 28)');
  await page.getByRole('button', { name: 'Auto' }).click();
  await frame.waitForFunction(() => !document.documentElement.dataset.theme);
  await page.locator('h1').click();
  await page.getByRole('button', { name: 'Focus chat' }).click();
  await frame.waitForFunction(() => document.activeElement && document.activeElement.id === 'composer-input');
  const resize = await hostEvents(page, 'resize');
  assert.ok(resize.length >= 1 && resize[0].height > 0, JSON.stringify(resize));
});

test('the SDK ignores postMessages from any other origin or frame', async () => {
  const { page } = alice;
  const count = () => page.evaluate(() => window.hostDemo.events.length);
  const n0 = await count();
  const forged = { source: 'chats3', type: 'unread', count: 99 };
  // 1. The host page's own window (origin localhost, not chats3).
  await page.evaluate((m) => window.postMessage(m, '*'), forged);
  // 2. A frame from a third origin.
  const thirdUrl = `http://127.0.0.1:${third.address().port}/`;
  await page.evaluate((u) => new Promise((res) => {
    const f = document.createElement('iframe');
    f.src = u;
    f.onload = res;
    document.body.append(f);
  }), thirdUrl);
  const other = page.frames().find((f) => f.url() === thirdUrl);
  await other.evaluate((m) => parent.postMessage(m, '*'), forged);
  // 3. Another frame at the chats3 origin itself (right origin, wrong window): a second room
  //    frame without a handoff code (the only chats3 page this host may frame).
  const secondRoom = `${server.url}/room/${CONV}?i=acme&second=1`;
  await page.evaluate((u) => new Promise((res) => {
    const f = document.createElement('iframe');
    f.src = u;
    f.onload = res;
    document.body.append(f);
  }), secondRoom);
  const sameOrigin = page.frames().find((f) => f.url() === secondRoom);
  await sameOrigin.evaluate((m) => parent.postMessage(m, '*'), forged);
  // The room accepts commands only from its parent at the host origin: a sibling frame (another
  // origin) and a chats3-origin sibling both try to switch it to dark.
  const cmd = { target: 'chats3', command: 'setTheme', theme: 'dark' };
  await other.evaluate((m) => parent.frames[0].postMessage(m, '*'), cmd);
  await sameOrigin.evaluate((m) => parent.frames[0].postMessage(m, '*'), cmd);
  await sleep(500);
  assert.equal(await chatFrame(page).evaluate(() => document.documentElement.dataset.theme || 'auto'), 'auto', 'the room obeyed a command from a frame that is not its host');
  assert.equal(await count(), n0, 'a forged message reached a handler');
  assert.ok(!(await hostEvents(page, 'unread')).some((e) => e.count === 99));
  assert.notEqual(await page.evaluate(() => window.hostDemo.chat.unread), 99);
  // The listener is still alive for the real frame.
  await page.locator('h1').click();
  await server.api('POST', '/api/v1/messages', { type: 'text', body: 'Real one', clientTimestamp: new Date().toISOString() }, bob.sessionId);
  await page.waitForFunction((n) => window.hostDemo.events.length > n, n0);
  assert.ok((await hostEvents(page, 'message')).some((e) => e.senderDisplayName === 'Bob'));
});

test('a host origin not in allowedOrigins cannot frame the room, and a ticket naming it is refused', async () => {
  // CSP: frame-ancestors lists the integrator's origins with ?i=, nobody without it.
  const withI = (await fetch(`${server.url}/room/${CONV}?i=acme`)).headers.get('content-security-policy');
  assert.match(withI, new RegExp(`frame-ancestors 'self' http://localhost:${hostPort}(;|$)`));
  const standalone = (await fetch(`${server.url}/room/${CONV}`)).headers.get('content-security-policy');
  assert.match(standalone, /frame-ancestors 'none'/);

  // A ticket naming the other origin: refused by the API and by GET /embed.
  const t = signTicket(SECRET, { integratorId: 'acme', conversationId: CONV, userId: 'mallory', displayName: 'Mallory', origin: `http://localhost:${evilPort}` });
  const api = await fetch(`${server.url}/api/v1/embed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(t) });
  assert.equal(api.status, 403);
  assert.match((await api.json()).message, /origin/i);
  const t2 = signTicket(SECRET, { integratorId: 'acme', conversationId: CONV, userId: 'mallory', displayName: 'Mallory', origin: `http://localhost:${evilPort}` });
  const nav = await fetch(`${server.url}/embed?${new URLSearchParams(t2)}`, { redirect: 'manual' });
  assert.equal(nav.status, 403);

  // The not-allowed host page mounts the SDK: its ticket is refused, no room loads.
  const { context, page } = await blockedContext();
  const csp = [];
  page.on('console', (m) => {
    if (/frame-ancestors|Refused to frame/i.test(m.text())) csp.push(m.text());
  });
  await page.goto(`http://localhost:${evilPort}/?user=mallory&name=Mallory`);
  await page.waitForFunction(() => window.hostDemo);
  await sleep(1500);
  assert.equal(chatFrame(page), undefined, 'the room loaded for a ticket naming a foreign origin');
  assert.deepEqual(await hostEvents(page, 'ready'), []);

  // Framing the room directly from that origin (even with ?i=acme) is blocked by the CSP.
  for (const src of [`${server.url}/room/${CONV}?i=acme`, `${server.url}/room/${CONV}`]) {
    await page.evaluate((u) => new Promise((res) => {
      const f = document.createElement('iframe');
      f.src = u;
      f.onload = res;
      f.onerror = res;
      document.body.append(f);
      setTimeout(res, 3000);
    }), src);
  }
  await sleep(500);
  const roomFrames = page.frames().filter((f) => f.url().startsWith(`${server.url}/room/`));
  for (const f of roomFrames) {
    const loaded = await f.evaluate(() => Boolean(document.body && document.body.dataset.conversationId)).catch(() => false);
    assert.equal(loaded, false, `the room rendered inside ${f.url()}`);
  }
  assert.ok(csp.length >= 2, `expected CSP frame-ancestors violations, got: ${csp.join(' | ')}`);
  await context.close();
});

/** Which snippet runners exist here: [lang, argv...] (the harnesses of tests/sdk-vectors). */
function snippetRunners() {
  const has = (cmd) => {
    try {
      execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  const all = [
    ['node', 'node', [process.execPath, 'harness.mjs']],
    ['python', 'python3', ['python3', 'harness.py']],
    ['php', 'php', ['php', 'harness.php']],
    ['go', 'go', ['go', 'run', 'sign.go', 'harness.go']],
  ];
  return all.filter(([, cmd]) => has(cmd)).map(([lang, , argv]) => [lang, argv]);
}

test('the guide\'s signing snippets (every language installed here) mint tickets and system messages the real server accepts', async () => {
  const { page } = alice;
  const frame = chatFrame(page);
  const dir = mkdtempSync(join(tmpdir(), 'chats3-snippets-'));
  const langs = [];
  try {
    for (const [lang, argv] of snippetRunners()) {
      const now = Date.now();
      const vectors = {
        tickets: [{ name: 'live', secret: SECRET, fields: { integratorId: 'acme', conversationId: CONV, userId: `snippet-${lang}`, displayName: `Snippet ${lang} ☕`, role: 'participant', origin: `http://localhost:${hostPort}`, issuedAt: now, expiresAt: now + 60000, nonce: `nonce-${lang}-${now}` } }],
        systemMessages: [{ name: 'live', secret: SECRET, integratorId: 'acme', conversationId: CONV, body: `Signed in ${lang}: "quotes", back\\slash, café ☕`, timestamp: now }],
        webhook: { secret: SECRET, toleranceSeconds: 300, cases: [] },
      };
      const file = join(dir, `${lang}.json`);
      writeFileSync(file, JSON.stringify(vectors));
      const out = JSON.parse(execFileSync(argv[0], [...argv.slice(1), file], { cwd: join(ROOT, 'tests/sdk-vectors'), env: { ...process.env, GO111MODULE: 'off', GOCACHE: process.env.GOCACHE || join(tmpdir(), 'chats3-gocache') }, encoding: 'utf8' }));
      const embed = await fetch(`${server.url}/api/v1/embed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ticket: out['ticket/live/ticket'], signature: out['ticket/live/signature'] }) });
      assert.equal(embed.status, 200, `${lang} ticket: ${await embed.clone().text()}`);
      assert.equal((await embed.json()).details.userId, `snippet-${lang}`);
      const m = vectors.systemMessages[0];
      const sys = await fetch(`${server.url}/api/v1/system-message`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ integratorId: 'acme', conversationId: CONV, body: m.body, timestamp: m.timestamp, signature: out['sysmsg/live/signature'] }) });
      assert.equal(sys.status, 200, `${lang} system message: ${await sys.clone().text()}`);
      await frame.waitForFunction((b) => window.chats3Debug.messages().some((x) => x.body === b), m.body, { timeout: 15000 });
      langs.push(lang);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`  accepted by the server: ${langs.join(', ')}`);
  assert.ok(langs.includes('node') && langs.includes('python'));
});

test('a call inside the iframe (camera and microphone delegated by allow=) reports call started and ended to the host', async () => {
  const { page } = alice;
  const frame = chatFrame(page);
  await frame.locator('#call-btn').click();
  await waitHostEvent(page, (ev) => ev.some((e) => e.type === 'call' && e.event === 'started' && e.joined));
  // The fake camera really runs inside the cross-origin frame.
  await frame.waitForFunction(() => [...document.querySelectorAll('#video-grid video')].some((v) => v.srcObject && v.srcObject.getVideoTracks().some((t) => t.readyState === 'live')), null, { timeout: 15000 });
  await frame.locator('#hangup-btn').click();
  await waitHostEvent(page, (ev) => ev.some((e) => e.type === 'call' && e.event === 'ended' && e.participants === 0));
});

test('leave from the host: the frame reports left and the session ends', async () => {
  const { page } = alice;
  const frame = chatFrame(page);
  await page.getByRole('button', { name: 'Leave chat' }).click();
  await waitHostEvent(page, (ev) => ev.some((e) => e.type === 'left'));
  await frame.waitForFunction(() => /left the conversation/.test(document.getElementById('banner').textContent));
  assert.equal(await frame.locator('#composer-input').isDisabled(), true);
});

test('webhooks from the real server verify with every installed snippet; tampered copies do not', async () => {
  // Close the conversation so that all four event types have been sent.
  await server.api('POST', `/api/v1/admin/conversations/${CONV}/close`, { adminPassword: ADMIN_PASSWORD });
  const types = () => new Set(deliveries.map((d) => JSON.parse(d.body).type));
  const want = ['message.created', 'participant.joined', 'participant.left', 'conversation.closed'];
  for (let i = 0; i < 150 && !want.every((t) => types().has(t)); i += 1) await sleep(100);
  assert.deepEqual(want.filter((t) => !types().has(t)), [], `webhook types received: ${[...types()].join(', ')}`);
  const now = Math.floor(Date.now() / 1000);
  const cases = [];
  for (const [i, d] of deliveries.entries()) {
    const header = d.headers['x-chats3-signature'];
    assert.match(header, /^t=\d+,v1=[0-9a-f]{64}$/);
    const e = JSON.parse(d.body);
    assert.equal(e.integratorId, 'acme');
    assert.equal(e.conversationId, CONV);
    assert.ok(e.id && e.createdAt && e.data);
    cases.push({ name: `real-${i}`, header, body: d.body, now, valid: true });
    cases.push({ name: `tampered-${i}`, header, body: d.body.replace(CONV, `${CONV}x`), now, valid: false });
    cases.push({ name: `replayed-late-${i}`, header, body: d.body, now: now + 600, valid: false });
  }
  const dir = mkdtempSync(join(tmpdir(), 'chats3-hooks-'));
  const file = join(dir, 'vectors.json');
  writeFileSync(file, JSON.stringify({ tickets: [], systemMessages: [], webhook: { secret: SECRET, toleranceSeconds: 300, cases } }));
  const langs = [];
  try {
    for (const [lang, argv] of snippetRunners()) {
      const out = JSON.parse(execFileSync(argv[0], [...argv.slice(1), file], { cwd: join(ROOT, 'tests/sdk-vectors'), env: { ...process.env, GO111MODULE: 'off', GOCACHE: process.env.GOCACHE || join(tmpdir(), 'chats3-gocache') }, encoding: 'utf8' }));
      for (const c of cases) assert.equal(out[`webhook/${c.name}`], c.valid, `${lang}: ${c.name} (${JSON.parse(c.body).type})`);
      langs.push(lang);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`  ${deliveries.length} deliveries (${[...types()].join(', ')}) verified by: ${langs.join(', ')}`);
});
