// Simulcast in the browser: in a three-person relay call (MESH_MAX=2) every page publishes its camera
// in several layers, and the relay sends each subscriber the layer that fits the size the page says it
// shows that video at. Shrinking one page's videos moves only that page to the small layer; restoring
// them moves it back. Real Chromium with the fake 640x480 camera (Chrome sends two of the three layers
// at that size: 160 and 320 pixels wide).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { joinedRoom, everyoneJoinsCall, poll, sleep } from './lib.mjs';

let room;
let pages = [];

before(async () => {
  room = await joinedRoom('simulcast', ['Ada', 'Bo', 'Cy'], {
    env: { MESH_MAX: '2' },
    viewport: { width: 900, height: 640 },
  });
  pages = room.pages;
});

after(async () => room?.close());

/** The page's video layers as sent: [rid, frames encoded, width, quality limitation]. */
const layersOf = (page) => page.evaluate(async () => {
  const relay = window.chats3Debug.call().relay;
  const layers = [];
  if (relay) {
    (await relay.pc.getStats()).forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) layers.push([s.rid, s.framesEncoded || 0, s.frameWidth || 0, s.qualityLimitationReason]);
    });
  }
  return layers;
});

/** The distinct widths of the layers being sent, smallest first. */
const widthsOf = (layers) => [...new Set(layers.filter(([, frames, w]) => frames > 0 && w > 0).map(([, , w]) => w))].sort((a, b) => a - b);

/** Waits (60 s at most) until `page` sends video in two or more layers of different widths. */
async function sentLayers(page) {
  const deadline = Date.now() + 60000;
  let layers = [];
  while (Date.now() < deadline) {
    layers = await layersOf(page);
    if (widthsOf(layers).length >= 2) break;
    await sleep(500);
  }
  return { widths: widthsOf(layers), layers };
}

/** What each page sends (layer, frames, width, limitation) and its upload estimate, for failures. */
async function senders() {
  for (const page of pages) {
    console.log(page.userName, await page.evaluate(async () => {
      const out = [window.chats3Debug.state.me.userId.slice(0, 6)];
      (await window.chats3Debug.call().relay.pc.getStats()).forEach((s) => {
        if (s.type === 'outbound-rtp' && s.kind === 'video') out.push([s.rid, s.framesEncoded, s.frameWidth, s.qualityLimitationReason]);
        if (s.type === 'candidate-pair' && s.nominated && s.availableOutgoingBitrate) out.push(['bwe', s.availableOutgoingBitrate]);
      });
      return JSON.stringify(out);
    }));
  }
}

/** Waits until `page` decodes each of the two others at `width` pixels. */
async function receivesWidth(page, width, what) {
  try {
    await poll(page, async (w) => {
      const stats = Object.values(await window.chats3Debug.getStats());
      return { ok: stats.length === 2 && stats.every((s) => s.frameWidth === w && s.framesDecoded > 0), widths: stats.map((s) => [s.userId.slice(0, 6), s.frameWidth]) };
    }, width, { timeout: 30000, what });
  } catch (err) {
    await senders();
    throw err;
  }
}

/** Shows (or stops showing) the page's remote videos at 64x48 CSS pixels (CSSOM: the CSP allows no inline style sheets). */
function thumbnails(page, on) {
  return page.evaluate((small) => {
    for (const v of document.querySelectorAll('#video-grid .tile:not(.local) video')) {
      for (const [prop, value] of [['width', '64px'], ['height', '48px']]) {
        if (small) v.style.setProperty(prop, value, 'important');
        else v.style.removeProperty(prop);
      }
    }
  }, on);
}

test('pages publish several layers; each subscriber gets the layer that fits its tiles', async (t) => {
  await everyoneJoinsCall(pages);
  const widths = [];
  for (const page of pages) {
    const sent = await sentLayers(page);
    if (sent.widths.length < 2) {
      // Chrome turns layers off when its upload estimate is too low for them: on a machine too
      // loaded to carry the call that is Chrome's choice, not a fault of ours; anything else is.
      await senders();
      const starved = sent.layers.some(([, , , why]) => why === 'bandwidth');
      if (starved) return t.skip(`${page.userName} sends one layer, limited by bandwidth: ${JSON.stringify(sent.layers)}`);
      assert.fail(`${page.userName} sends fewer than two layers: ${JSON.stringify(sent.layers)}`);
    }
    widths.push(sent.widths);
  }
  // Everyone sends the same camera, so the same layers.
  for (const w of widths) assert.deepEqual(w, widths[0], `layer widths ${JSON.stringify(widths)}`);
  const small = widths[0][0];
  const large = widths[0][widths[0].length - 1];
  assert.ok(small < large, `layers differ: ${small} < ${large}`);
  // Tiles in a 900x640 window are taller than the small layer: everyone gets the larger one.
  for (const page of pages) await receivesWidth(page, large, `the ${large}-wide layer from both others`);

  // Ada shows the others in a thumbnail: her next size report moves her (only) to the small layer.
  await thumbnails(pages[0], true);
  await receivesWidth(pages[0], small, `the ${small}-wide layer once the tiles are small`);
  for (const page of pages.slice(1)) await receivesWidth(page, large, `still the ${large}-wide layer`);

  // Back to full tiles: back up to the large layer.
  await thumbnails(pages[0], false);
  await receivesWidth(pages[0], large, `the ${large}-wide layer again`);
});
