// Last-N in the browser: a three-person relay call (MESH_MAX=2) where the relay forwards only the
// most recent speaker's video (LAST_N=1). The speaker is named by the relay from the audio-level
// header extension; the other remote tile shows its avatar, and its video stops arriving.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { joinedRoom, everyoneJoinsCall, poll } from './lib.mjs';

let room;
let pages = [];

before(async () => {
  room = await joinedRoom('last-n', ['Ada', 'Bo', 'Cy'], {
    // One UDP port for every participant, as the README advises for production.
    env: { MESH_MAX: '2', LAST_N: '1', RELAY_UDP: '127.0.0.1:0' },
    viewport: { width: 900, height: 640 },
  });
  pages = room.pages;
});

after(async () => room?.close());

/** Video frames the page has decoded from `userId` so far. */
const framesFrom = (page, userId) =>
  page.evaluate(async (id) => (await window.chats3Debug.getStats())[id]?.framesDecoded || 0, userId);

test('only the active speaker’s video is forwarded; the other tile shows its avatar', async () => {
  await everyoneJoinsCall(pages);
  await poll(pages[0], () => ({ ok: window.chats3Debug.call().mode === 'relay' && !!window.chats3Debug.call().relay }), null, {
    what: 'relay mode',
  });
  const [bo, cy] = await Promise.all([pages[1], pages[2]].map((p) => p.evaluate(() => window.chats3Debug.state.me.userId)));
  // Everyone but Bo mutes: the relay names Bo, and Ada's page forwards-marks Bo only.
  for (const page of [pages[0], pages[2]]) await page.getByRole('button', { name: 'Mute' }).click();
  await pages[0].locator(`#video-grid .tile.speaking[data-user-id="${bo}"]`).waitFor({ timeout: 20000 });
  await pages[0].locator(`#video-grid .tile[data-user-id="${bo}"][data-forwarded="yes"]`).waitFor();
  await pages[0].locator(`#video-grid .tile[data-user-id="${cy}"][data-forwarded="no"]`).waitFor();
  assert.ok(await pages[0].locator(`#video-grid .tile[data-user-id="${cy}"] .tile-placeholder`).isVisible(), 'Cy shows an avatar');
  // Bo's video keeps arriving at Ada; Cy's has stopped (allow a few frames in flight).
  await poll(pages[0], async (id) => ({ ok: ((await window.chats3Debug.getStats())[id]?.framesDecoded || 0) > 0 }), bo, {
    what: "frames from Bo",
  });
  const [bo1, cy1] = [await framesFrom(pages[0], bo), await framesFrom(pages[0], cy)];
  await new Promise((r) => setTimeout(r, 3000));
  const [bo2, cy2] = [await framesFrom(pages[0], bo), await framesFrom(pages[0], cy)];
  assert.ok(bo2 - bo1 >= 10, `Bo's video flows (${bo1} → ${bo2} frames)`);
  assert.ok(cy2 - cy1 <= 3, `Cy's video is paused (${cy1} → ${cy2} frames)`);
});
