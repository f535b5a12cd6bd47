// Two users chat through the real UI: messages both ways, typing, reactions, receipts,
// reload without duplicates, history paging, search, and image upload/paste previews.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, launch, newUser, joinViaUi, send, waitForMessage, bodies, shot, makePng, waitReady } from './lib.mjs';

let server, browser, conv, alice, bob;

before(async () => {
  server = await Server.start('chat');
  browser = await launch();
  conv = await server.createConversation();
  alice = await newUser(browser, 'alice');
  bob = await newUser(browser, 'bob');
});

after(async () => {
  for (const p of [alice, bob]) if (p && p.errors.length) console.log(p.errors.join('\n'));
  await browser?.close();
  await server?.dispose();
});

test('the join page renders and pre-fills the conversation from ?c=', async () => {
  await alice.goto(`${server.url}/join?c=${conv.conversationId}`);
  assert.equal(await alice.getByLabel('Conversation ID').inputValue(), conv.conversationId);
  await shot(alice, 'join-page');
  await alice.getByLabel('Join code').fill('WRONG1');
  await alice.getByLabel('Your name').fill('Alice');
  await alice.getByRole('button', { name: 'Join' }).click();
  await alice.getByRole('alert').filter({ hasText: /./ }).waitFor();
  assert.match(await alice.locator('#join-error').textContent(), /\S/);
});

test('two users join and exchange messages both ways', async () => {
  await joinViaUi(alice, server, conv, 'Alice');
  await joinViaUi(bob, server, conv, 'Bob');
  await alice.locator('#people-list .person', { hasText: 'Bob' }).waitFor();
  await send(alice, 'Hello Bob 👋');
  await waitForMessage(bob, 'Hello Bob 👋');
  await send(bob, 'Hi Alice! <b>not bold</b>');
  // The server strips HTML; either way it must arrive as text, never as markup.
  await alice.waitForFunction(() => [...document.querySelectorAll('#message-list .msg-bubble')].some((b) => b.textContent.startsWith('Hi Alice!')), null, { timeout: 15000 });
  assert.equal(await alice.locator('#message-list b').count(), 0, 'user text must never become markup');
  // Escaped characters (&amp; &lt;) come back as plain text; tags are gone on both sides.
  await send(bob, 'Tom & Jerry <3 <i>x</i>');
  await waitForMessage(alice, 'Tom & Jerry <3 x');
  await waitForMessage(bob, 'Tom & Jerry <3 x');
  assert.equal(await alice.locator('#message-list i').count(), 0);
  // Shift+Enter makes a newline, Enter sends.
  const box = alice.getByLabel('Message', { exact: true });
  await box.fill('line one');
  await box.press('Shift+Enter');
  await box.type('line two');
  await box.press('Enter');
  await waitForMessage(bob, 'line one\nline two');
  // system messages about the joins are shown
  assert.ok(await bob.locator('#message-list .msg.system').count() >= 1);
});

test('typing indicator and a reaction reach the other user', async () => {
  await bob.getByLabel('Message', { exact: true }).type('typing something', { delay: 20 });
  await alice.waitForFunction(() => /Bob is typing/.test(document.getElementById('typing').textContent), null, { timeout: 10000 });
  await bob.getByLabel('Message', { exact: true }).fill('');
  const msg = alice.locator('#message-list .msg', { hasText: 'Hello Bob' });
  await msg.hover();
  await msg.getByRole('button', { name: 'Add reaction' }).click();
  await alice.getByRole('button', { name: 'React with 👍' }).click();
  const chip = bob.locator('#message-list .msg', { hasText: 'Hello Bob' }).locator('.reaction');
  await chip.waitFor({ timeout: 10000 });
  assert.match(await chip.textContent(), /👍\s*1/);
  // Bob adds the same emoji: the count is 2 on both sides.
  await chip.click();
  await alice.waitForFunction(() => /👍\s*2/.test(document.querySelector('#message-list .reaction')?.textContent || ''), null, { timeout: 10000 });
});

test('read receipts: the sender sees who read the message', async () => {
  await send(alice, 'Did you read this?');
  await waitForMessage(bob, 'Did you read this?');
  await bob.bringToFront();
  await alice.waitForFunction(() => [...document.querySelectorAll('.receipt')].some((r) => /Seen by Bob/.test(r.textContent)), null, { timeout: 10000 });
});

test('search filters the loaded messages', async () => {
  await bob.getByLabel('Search messages').fill('line two');
  await bob.waitForFunction(() => document.getElementById('search-count').textContent === '1 match');
  assert.equal(await bob.locator('#message-list .msg:visible').count(), 1);
  await bob.getByLabel('Search messages').fill('');
  assert.ok((await bob.locator('#message-list .msg:visible').count()) > 3);
});

test('a reload shows the history without duplicates', async () => {
  const beforeReload = await bodies(bob);
  await bob.reload();
  await waitReady(bob);
  const afterReload = await bodies(bob);
  assert.deepEqual(afterReload, beforeReload);
  assert.equal(new Set(await bob.$$eval('#message-list .msg', (n) => n.map((x) => x.dataset.messageId))).size, await bob.locator('#message-list .msg').count());
  // reactions survive too
  await bob.locator('#message-list .reaction', { hasText: '👍 2' }).waitFor({ timeout: 5000 });
  // and the live stream still works after the reload
  await send(alice, 'after reload');
  await waitForMessage(bob, 'after reload');
  await send(bob, 'still here');
  await waitForMessage(alice, 'still here');
  assert.deepEqual((await bodies(alice)).filter((b) => b === 'after reload').length, 1);
});

test('the unread counter appears in the tab title while away', async () => {
  await bob.evaluate(() => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await send(alice, 'are you there?');
  await bob.waitForFunction(() => /^\(1\) /.test(document.title), null, { timeout: 10000 });
  await bob.evaluate(() => {
    delete document.visibilityState;
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await bob.waitForFunction(() => !/^\(\d+\) /.test(document.title));
});

test('screenshot: room with messages (desktop and 360 px)', async () => {
  await bob.locator('#messages').evaluate((n) => (n.scrollTop = n.scrollHeight));
  await shot(bob, 'room-messages');
  await bob.setViewportSize({ width: 360, height: 740 });
  await bob.locator('#messages').evaluate((n) => (n.scrollTop = n.scrollHeight));
  const overflow = await bob.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `page scrolls sideways at 360 px by ${overflow}px`);
  await shot(bob, 'room-messages-360');
  await bob.getByRole('button', { name: /People/ }).click();
  await bob.locator('#people.open .person', { hasText: 'Alice' }).waitFor();
  await bob.getByRole('button', { name: 'Close', exact: true }).click();
  await bob.locator('#people').waitFor({ state: 'hidden' });
  await bob.setViewportSize({ width: 1100, height: 760 });
});

test('older history loads when scrolling up (paging)', async () => {
  const sid = await alice.evaluate(() => Object.entries(sessionStorage).find(([k]) => k.startsWith('chats3.session.'))[1]);
  for (let i = 0; i < 70; i += 1) {
    await server.api('POST', '/api/v1/messages', { type: 'text', body: `bulk ${i}`, clientTimestamp: new Date().toISOString() }, sid);
  }
  await bob.reload();
  await waitReady(bob);
  const firstCount = await bob.locator('#message-list .msg').count();
  assert.ok(firstCount <= 60, `first page should be limited, got ${firstCount}`);
  await bob.locator('#messages').evaluate((n) => (n.scrollTop = 0));
  await bob.waitForFunction((c) => document.querySelectorAll('#message-list .msg').length > c, firstCount, { timeout: 10000 });
  await bob.locator('#messages').evaluate((n) => (n.scrollTop = 0));
  await bob.waitForFunction(() => [...document.querySelectorAll('#message-list .msg-bubble')].some((b) => b.textContent === 'Hello Bob 👋'), null, { timeout: 10000 });
  const all = await bob.$$eval('#message-list .msg', (n) => n.map((x) => x.dataset.messageId));
  assert.equal(new Set(all).size, all.length, 'no duplicates across pages');
  const seqs = await bob.$$eval('#message-list .msg', (n) => n.map((x) => Number(x.dataset.seq)));
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'messages in order');
  await bob.locator('#messages').evaluate((n) => (n.scrollTop = n.scrollHeight));
});

test('an uploaded and a pasted image show a preview for the other user', async (t) => {
  const png = makePng();
  const probe = await fetch(`${server.url}/api/v1/attachments`, { method: 'POST' });
  if (probe.status === 404) {
    t.skip('POST /api/v1/attachments answers 404: attachments are not implemented on the server yet');
    return;
  }
  await alice.locator('#file-input').setInputFiles({ name: 'gradient.png', mimeType: 'image/png', buffer: png });
  const preview = bob.locator('#message-list img.preview[alt="gradient.png"]');
  await preview.waitFor({ timeout: 15000 });
  await bob.waitForFunction(() => {
    const img = document.querySelector('#message-list img.preview[alt="gradient.png"]');
    return img && img.complete && img.naturalWidth === 96;
  }, null, { timeout: 15000 });
  // paste an image into the composer
  await alice.evaluate(async (bytes) => {
    const file = new File([new Uint8Array(bytes)], 'image.png', { type: 'image/png' });
    const dt = new DataTransfer();
    dt.items.add(file);
    document.getElementById('composer-input').dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
  }, [...png]);
  await bob.waitForFunction(() => [...document.querySelectorAll('#message-list img.preview')].some((i) => /^pasted-/.test(i.alt) && i.complete && i.naturalWidth === 96), null, { timeout: 15000 });
  // drag and drop a file onto the chat
  await alice.evaluate(async (bytes) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(bytes)], 'dropped.png', { type: 'image/png' }));
    const area = document.querySelector('.chat');
    area.dispatchEvent(new DragEvent('dragenter', { dataTransfer: dt, bubbles: true, cancelable: true }));
    if (document.getElementById('drop-hint').hidden) throw new Error('drop hint not shown');
    area.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, [...png]);
  await bob.locator('#message-list img.preview[alt="dropped.png"]').waitFor({ timeout: 15000 });
  assert.equal(await alice.locator('#drop-hint').isHidden(), true);
  await bob.locator('#messages').evaluate((n) => (n.scrollTop = n.scrollHeight));
  await shot(bob, 'room-images');
});

test('other files arrive as download links', async () => {
  const pdf = Buffer.from('%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n');
  await bob.locator('#file-input').setInputFiles({ name: 'notes.pdf', mimeType: 'application/pdf', buffer: pdf });
  const link = alice.locator('#message-list a.file-link', { hasText: 'notes.pdf' });
  await link.waitFor({ timeout: 15000 });
  const download = alice.waitForEvent('download', { timeout: 15000 });
  await link.click();
  const file = await download;
  assert.equal(file.suggestedFilename(), 'notes.pdf');
  const { readFile } = await import('node:fs/promises');
  assert.deepEqual(await readFile(await file.path()), pdf);
});

test('four files dropped at once all arrive (the page uploads two at a time, as the server allows)', async () => {
  const pdf = '%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n';
  await bob.evaluate((text) => {
    const dt = new DataTransfer();
    for (const n of [1, 2, 3, 4]) dt.items.add(new File([text], `batch-${n}.pdf`, { type: 'application/pdf' }));
    document.querySelector('.chat').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, pdf);
  for (const n of [1, 2, 3, 4]) {
    await alice.locator('#message-list a.file-link', { hasText: `batch-${n}.pdf` }).waitFor({ timeout: 15000 });
  }
  assert.equal(await bob.locator('#uploads .upload[data-state="error"]').count(), 0);
});


test('camera denied: the call still starts receive-only with a clear message', async () => {
  const carol = await newUser(browser, 'carol');
  await carol.addInitScript(() => {
    navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
  });
  await joinViaUi(carol, server, conv, 'Carol');
  await carol.getByRole('button', { name: 'Start call' }).click();
  await carol.locator('#banner', { hasText: /Camera and microphone are unavailable \(permission denied\)/ }).waitFor();
  assert.equal(await carol.getByRole('button', { name: 'Mute' }).isDisabled(), true);
  await alice.getByRole('button', { name: 'Join call (1)' }).waitFor({ timeout: 10000 });
  await carol.getByRole('button', { name: 'Leave call' }).click();
  await alice.getByRole('button', { name: 'Start call' }).waitFor({ timeout: 10000 });
  await carol.getByRole('button', { name: 'Leave', exact: true }).click();
  await carol.waitForURL(/\/join\?c=/);
  await alice.locator('#people-list .person', { hasText: 'Carol' }).waitFor({ state: 'detached', timeout: 15000 });
  await carol.context().close();
});

test('closing the conversation from the admin page shows the closed state in the room', async () => {
  const admin = await newUser(browser, 'admin');
  admin.on('dialog', (d) => d.accept());
  await admin.goto(`${server.url}/admin`);
  await admin.getByLabel('Admin password').fill('e2e-admin-pw');
  await admin.getByLabel(/Conversation ID/).fill(conv.conversationId);
  await admin.getByRole('button', { name: 'Look up' }).click();
  await admin.locator('#r-code', { hasText: conv.joinCode }).waitFor();
  await admin.getByRole('button', { name: 'Close conversation' }).click();
  await admin.locator('#r-status', { hasText: 'closed' }).waitFor();
  for (const page of [alice, bob]) {
    await page.locator('#banner', { hasText: /has been closed/ }).waitFor({ timeout: 10000 });
    assert.equal(await page.getByLabel('Message', { exact: true }).isDisabled(), true);
  }
  await admin.context().close();
});
