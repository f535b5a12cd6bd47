// Accessibility audit (axe-core) of the join, room and admin pages: no serious or critical issues.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { Server, launch, newUser, joinViaUi, send, waitForMessage, shot } from './lib.mjs';

const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
let server, browser, conv;

before(async () => {
  server = await Server.start('a11y');
  browser = await launch();
  conv = await server.createConversation();
});
after(async () => {
  await browser?.close();
  await server?.dispose();
});

async function audit(page, label) {
  await page.addScriptTag({ content: axeSource }).catch(async () => {
    // the CSP blocks inline scripts (as it should): evaluate axe directly instead
    await page.evaluate(axeSource);
  });
  const result = await page.evaluate(async () => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const report = bad.map((v) => `${v.impact} ${v.id}: ${v.help}\n  ${v.nodes.map((n) => n.target.join(' ')).join('\n  ')}`).join('\n');
  assert.equal(bad.length, 0, `${label}: axe found serious/critical violations:\n${report}`);
}

for (const scheme of ['light', 'dark']) {
  test(`join, room and admin pages pass axe (${scheme})`, async () => {
    const page = await newUser(browser, `a11y-${scheme}`);
    await page.emulateMedia({ colorScheme: scheme });
    await page.goto(`${server.url}/join?c=${conv.conversationId}`);
    await audit(page, `join (${scheme})`);
    await page.goto(`${server.url}/admin`);
    await page.getByLabel('Admin password').fill('e2e-admin-pw');
    await page.getByRole('button', { name: 'Create conversation' }).click();
    await page.locator('#result:not([hidden])').waitFor();
    await audit(page, `admin (${scheme})`);
    if (scheme === 'light') await shot(page, 'admin-page');
    await joinViaUi(page, server, conv, `Auditor ${scheme}`);
    await send(page, `Checking contrast in ${scheme} mode`);
    await waitForMessage(page, `Checking contrast in ${scheme} mode`);
    const msg = page.locator('#message-list .msg', { hasText: 'Checking contrast' }).first();
    await msg.getByRole('button', { name: 'Add reaction' }).click();
    await page.getByRole('button', { name: 'React with 🎉' }).click();
    await audit(page, `room (${scheme})`);
    if (scheme === 'dark') await shot(page, 'room-dark');
    await page.context().close();
  });
}

test('the room is usable with the keyboard alone', async () => {
  const page = await newUser(browser, 'keyboard');
  await page.goto(`${server.url}/join?c=${conv.conversationId}`);
  // focus starts in the form; type the code, tab to the name, Enter submits
  await page.keyboard.type(conv.joinCode);
  await page.keyboard.press('Tab');
  await page.keyboard.type('Keys');
  await page.keyboard.press('Enter');
  await page.waitForURL(`**/room/${conv.conversationId}`);
  await page.waitForFunction(() => window.chats3Debug && window.chats3Debug.ready);
  // the composer has focus after load
  assert.equal(await page.evaluate(() => document.activeElement.id), 'composer-input');
  await page.keyboard.type('typed with keys only');
  await page.keyboard.press('Enter');
  await waitForMessage(page, 'typed with keys only');
  await page.context().close();
});
