// Three users in a peer-to-peer mesh call with Chromium's fake camera and microphone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { joinedRoom, shot, ARTIFACTS, send, poll } from './lib.mjs';

let room;
let pages = [];
const names = ['Ana', 'Ben', 'Cleo'];

before(async () => {
  room = await joinedRoom('call', names, { viewport: { width: 1000, height: 720 } });
  pages = room.pages;
});

after(async () => room?.close());

const stats = (page) => page.evaluate(() => window.chats3Debug.getStats());


function waitDecoding(page, n) {
  return poll(page, async (count) => {
    const s = Object.values(await window.chats3Debug.getStats());
    return { ok: s.length === count && s.every((x) => x.framesDecoded > 0 && x.audioBytes > 0), s };
  }, n, { what: `decoded video+audio from ${n} peers` });
}

test('three users start and join a mesh call and decode video from both others', async () => {
  await pages[0].getByRole('button', { name: 'Start call' }).click();
  await pages[0].locator('#video-grid .tile.local').waitFor();
  for (const page of pages.slice(1)) {
    await page.getByRole('button', { name: /Join call/ }).waitFor({ timeout: 10000 });
    await page.getByRole('button', { name: /Join call/ }).click();
  }
  for (const page of pages) await waitDecoding(page, 2);
  for (const page of pages) {
    const tiles = await page.$$eval('#video-grid .tile', (n) => n.map((t) => `${t.dataset.userId}:${t.querySelector('.name').textContent}`));
    assert.equal(tiles.length, 3, `${page.userName} tiles ${JSON.stringify(tiles)} peers ${JSON.stringify(await page.evaluate(() => window.chats3Debug.peers()))} events ${JSON.stringify(await page.evaluate(() => window.chats3Debug.events().filter((e) => !/ice-candidate/.test(e))))}`);
    for (const other of names) await page.locator('#video-grid .tile .name', { hasText: other }).first().waitFor();
  }
  await send(pages[0], 'We are all in the call');
  await pages[2].locator('#people-list .tag-call').nth(2).waitFor();
  await shot(pages[0], 'call-3-people');
  await pages[2].setViewportSize({ width: 360, height: 740 });
  await pages[2].waitForTimeout(300);
  const overflow = await pages[2].evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `call page scrolls sideways at 360 px by ${overflow}px`);
  await shot(pages[2], 'call-3-people-360');
  await pages[2].setViewportSize({ width: 1000, height: 720 });
});

test('muting the microphone is reflected on the other pages', async () => {
  const ana = await pages[0].evaluate(() => window.chats3Debug.state.me.userId);
  await pages[0].getByRole('button', { name: 'Mute' }).click();
  assert.equal(await pages[0].getByRole('button', { name: 'Unmute' }).getAttribute('aria-pressed'), 'true');
  assert.equal(await pages[0].evaluate(() => window.chats3Debug.call().local.getAudioTracks()[0].enabled), false);
  for (const page of pages.slice(1)) {
    await page.locator(`#video-grid .tile[data-user-id="${ana}"][data-audio="off"]`).waitFor({ timeout: 10000 });
  }
  await pages[0].getByRole('button', { name: 'Unmute' }).click();
  for (const page of pages.slice(1)) await page.locator(`#video-grid .tile[data-user-id="${ana}"][data-audio="on"]`).waitFor({ timeout: 10000 });
  // camera off shows the avatar placeholder remotely
  await pages[0].getByRole('button', { name: 'Camera off' }).click();
  await pages[1].locator(`#video-grid .tile[data-user-id="${ana}"][data-video="off"]`).waitFor({ timeout: 10000 });
  await pages[0].getByRole('button', { name: 'Camera on' }).click();
  await pages[1].locator(`#video-grid .tile[data-user-id="${ana}"][data-video="on"]`).waitFor({ timeout: 10000 });
  // the device picker lists the fake devices
  await pages[0].getByRole('button', { name: 'Devices' }).click();
  assert.ok((await pages[0].getByLabel('Camera', { exact: true }).locator('option').count()) >= 1);
  assert.ok((await pages[0].getByLabel('Microphone', { exact: true }).locator('option').count()) >= 1);
  await pages[0].getByRole('button', { name: 'Devices' }).click();
});

test('screen share replaces the outgoing video track and switching back restores the camera', async () => {
  const page = pages[1];
  const before = Object.values(await stats(page));
  const cameraId = before[0].sendingVideoId;
  await page.getByRole('button', { name: 'Share screen' }).click();
  await page.getByRole('button', { name: 'Stop sharing' }).waitFor({ timeout: 15000 });
  const during = Object.values(await stats(page));
  for (const s of during) {
    assert.notEqual(s.sendingVideoId, cameraId, 'screen track replaces the camera track on every peer');
    assert.equal(s.signaling, 'stable');
  }
  const ben = await page.evaluate(() => window.chats3Debug.state.me.userId);
  await pages[0].locator(`#video-grid .tile[data-user-id="${ben}"][data-screen="on"]`).waitFor({ timeout: 10000 });
  // remote keeps decoding frames from the shared screen
  const f0 = (await stats(pages[0]))[ben].framesDecoded;
  await poll(pages[0], async ([id, f]) => {
    const s = (await window.chats3Debug.getStats())[id];
    return { ok: s.framesDecoded > f + 5, s };
  }, [ben, f0], { timeout: 15000, what: 'frames of the shared screen' });
  await page.getByRole('button', { name: 'Stop sharing' }).click();
  const after = Object.values(await stats(page));
  for (const s of after) assert.equal(s.sendingVideoId, cameraId, 'camera track is back');
});

test('recording the call downloads a non-empty webm', async () => {
  const page = pages[0];
  await page.getByRole('button', { name: 'Record' }).click();
  await page.getByRole('button', { name: 'Stop recording' }).waitFor();
  await page.waitForTimeout(2500);
  const download = page.waitForEvent('download', { timeout: 15000 });
  await page.getByRole('button', { name: 'Stop recording' }).click();
  const file = await download;
  assert.match(file.suggestedFilename(), /\.webm$/);
  const path = join(ARTIFACTS, 'recording.webm');
  await file.saveAs(path);
  const size = statSync(path).size;
  assert.ok(size > 1000, `recording is ${size} bytes`);
  assert.deepEqual([...readFileSync(path).subarray(0, 4)], [0x1a, 0x45, 0xdf, 0xa3], 'EBML/WebM header');
});

test('leaving the call is seen by the others', async () => {
  await pages[2].getByRole('button', { name: 'Leave call' }).click();
  for (const page of pages.slice(0, 2)) {
    await page.waitForFunction(() => window.chats3Debug.peers().length === 1, null, { timeout: 10000 });
    assert.equal(await page.locator('#video-grid .tile').count(), 2);
  }
  // closing a tab tears down too
  await pages[1].close();
  await pages[0].waitForFunction(() => window.chats3Debug.peers().length === 0, null, { timeout: 15000 });
});

test('two people starting a call at the same moment still connect (glare)', async () => {
  const [ana, cleo] = [pages[0], pages[2]];
  await ana.getByRole('button', { name: 'Leave call' }).click();
  await cleo.getByRole('button', { name: 'Start call' }).waitFor({ timeout: 10000 });
  await ana.getByRole('button', { name: 'Start call' }).waitFor({ timeout: 10000 });
  await Promise.all([ana, cleo].map((p) => p.evaluate(() => document.getElementById('call-btn').click())));
  for (const page of [ana, cleo]) await waitDecoding(page, 1);
});
