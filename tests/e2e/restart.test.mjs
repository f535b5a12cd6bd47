// Network interruption: the server is killed and restarted on the same port and data directory
// while two pages are open. Both show "reconnecting", then resume and catch up with no duplicates.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Server, launch, newUser, joinViaUi, send, waitForMessage, bodies, sleep } from './lib.mjs';

let server, browser, conv, alice, bob;

before(async () => {
  server = await Server.start('restart');
  browser = await launch();
  conv = await server.createConversation();
  alice = await newUser(browser, 'alice');
  bob = await newUser(browser, 'bob');
  await joinViaUi(alice, server, conv, 'Alice');
  await joinViaUi(bob, server, conv, 'Bob');
});

after(async () => {
  for (const p of [alice, bob]) if (p && p.errors.length) console.log(p.errors.filter((e) => !/Failed to load resource|ERR_CONNECTION_REFUSED|signaling/.test(e)).join('\n'));
  await browser?.close();
  await server?.dispose();
});

test('pages reconnect after a server restart and catch up without duplicates', async () => {
  await send(alice, 'before restart');
  await waitForMessage(bob, 'before restart');

  await server.stop();
  for (const page of [alice, bob]) {
    await page.waitForFunction(() => window.chats3Debug.state.streamState === 'reconnecting', null, { timeout: 15000 });
    await page.locator('#banner', { hasText: /reconnecting/i }).waitFor();
  }
  // Sending during the outage fails visibly and is retried (same messageId) after reconnecting.
  await send(alice, 'sent during the outage');
  await alice.locator('#message-list .msg.failed', { hasText: 'sent during the outage' }).waitFor({ timeout: 10000 });
  await server.start();

  // A third participant posts right away, through the API: whichever page reconnects later
  // gets it by resuming from its cursor, the other one live.
  const carol = await server.api('POST', '/api/v1/join', { conversationId: conv.conversationId, joinCode: conv.joinCode, displayName: 'Carol' });
  await server.api('POST', '/api/v1/messages', { type: 'text', body: 'sent while you were away', clientTimestamp: new Date().toISOString() }, carol.sessionId);

  for (const page of [alice, bob]) {
    await page.waitForFunction(() => window.chats3Debug.state.streamState === 'open', null, { timeout: 30000 });
    await waitForMessage(page, 'sent while you were away', 20000);
    await waitForMessage(page, 'sent during the outage', 20000);
    await page.locator('#banner').waitFor({ state: 'hidden' });
  }
  await send(bob, 'after restart');
  await waitForMessage(alice, 'after restart');
  await send(alice, 'and back');
  await waitForMessage(bob, 'and back');
  await sleep(500);
  for (const page of [alice, bob]) {
    const b = await bodies(page);
    for (const text of ['before restart', 'sent while you were away', 'sent during the outage', 'after restart', 'and back']) {
      assert.equal(b.filter((x) => x === text).length, 1, `${page.userName} shows "${text}" exactly once: ${JSON.stringify(b)}`);
    }
  }
});
