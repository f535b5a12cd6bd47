// Six users in one call: past MESH_MAX (4) the server switches the call to its media relay and
// every page holds exactly one peer connection; a page's offer that crosses the relay's is answered
// (the relay rolls its own back); when two leave, the call goes back to a mesh by itself. Real
// Chromium with fake camera and microphone, the relay's default network settings.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { joinedRoom, everyoneJoinsCall, shot, poll, ARTIFACTS, DEFAULT_RUST_LOG, trackPeerConnections, waitCall } from './lib.mjs';

let room;
let pages = [];
const names = ['Ada', 'Bo', 'Cy', 'Dee', 'Eve', 'Fay'];

before(async () => {
  room = await joinedRoom('relay', names, {
    // The relay's layer switches and subscribers' keyframe requests go to the server log at debug;
    // relaySummary() reads them back when a page does not decode someone.
    env: { MESH_MAX: '4', RUST_LOG: `${DEFAULT_RUST_LOG},chats3_media=debug` },
    viewport: { width: 900, height: 640 },
    init: trackPeerConnections,
  });
  pages = room.pages;
});

after(async () => room?.close());


/** Per publisher → subscriber pair (user-id prefixes), from the server log: the layers the relay
 * switched the subscriber to, and its keyframe requests (how many the relay passed on). */
function relaySummary() {
  const log = readFileSync(join(ARTIFACTS, `${room.server.name}-server-${room.server.starts}.log`), 'utf8');
  const pairs = {};
  const field = (line, k) => (line.match(new RegExp(`${k}="?([\\w-]+)`)) || [])[1] || '?';
  for (const line of log.replace(/\x1b\[[0-9;]*m/g, '').split('\n')) {
    const sw = line.includes('relay layer switch');
    const kf = line.includes('relay keyframe request');
    if (!sw && !kf) continue;
    const key = `${field(line, 'publisher').slice(0, 6)}>${field(line, 'subscriber').slice(0, 6)}`;
    const p = pairs[key] || (pairs[key] = { switches: [], requests: 0, passed: 0 });
    if (sw) p.switches.push(`${line.slice(11, 23)} ${field(line, 'rid')}`);
    if (kf) {
      p.requests += 1;
      if (field(line, 'sent') === 'true') p.passed += 1;
    }
  }
  return pairs;
}

test('a sixth participant puts the call on the relay: one connection per page, video from all five others', async () => {
  await everyoneJoinsCall(pages);
  try {
    for (const page of pages) await waitCall(page, { mode: 'relay', pcs: 1, n: 5 });
  } catch (err) {
    for (const page of pages) {
      console.log(page.userName, await page.evaluate(() => window.chats3Debug.state.me.userId.slice(0, 6)), JSON.stringify(await page.evaluate(async () => {
        const r = window.chats3Debug.call().relay;
        const out = [];
        (await r.pc.getStats()).forEach((s) => { if (s.type === 'outbound-rtp') out.push([s.kind, s.rid, s.packetsSent]); });
        // Per inbound video stream: whose, and how far it got (bytes -> frames -> decoded), with
        // the keyframe requests and losses that explain a stream that never decodes.
        const report = await r.pc.getStats();
        const inbound = [];
        report.forEach((s) => {
          if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
          const codec = report.get(s.codecId);
          inbound.push({ user: (r.trackUser.get(s.trackIdentifier) || '?').slice(0, 6), ssrc: s.ssrc, mid: s.mid, codec: codec && codec.mimeType, bytes: s.bytesReceived, packets: s.packetsReceived, lost: s.packetsLost, framesReceived: s.framesReceived, framesDecoded: s.framesDecoded, keyFramesDecoded: s.keyFramesDecoded, framesDropped: s.framesDropped, pli: s.pliCount, fir: s.firCount, nack: s.nackCount, width: s.frameWidth, decoder: s.decoderImplementation });
        });
        // ICE: every pair that got anywhere, with its STUN counts and when it last heard anything,
        // to tell a path that stopped carrying packets from one that never carried them.
        const now = performance.timeOrigin + performance.now();
        const addr = (id) => { const c = report.get(id); return c && `${c.candidateType}:${c.address}:${c.port}`; };
        const pairs = [];
        report.forEach((s) => {
          if (s.type !== 'candidate-pair' || (!s.nominated && s.state !== 'succeeded')) return;
          pairs.push({ local: addr(s.localCandidateId), remote: addr(s.remoteCandidateId), state: s.state, nominated: s.nominated, sent: s.packetsSent, received: s.packetsReceived, reqSent: s.requestsSent, respRecv: s.responsesReceived, reqRecv: s.requestsReceived, respSent: s.responsesSent, consent: s.consentRequestsSent, rtt: s.currentRoundTripTime, lastRecvAgoMs: s.lastPacketReceivedTimestamp && Math.round(now - s.lastPacketReceivedTimestamp) });
        });
        return [r.pc.connectionState, r.pc.iceConnectionState, out, Object.values(await window.chats3Debug.getStats()).map((s) => [s.userId.slice(0, 6), s.framesDecoded, s.audioBytes]), inbound, pairs];
      })));
    }
    console.log('relay log', JSON.stringify(relaySummary()));
    throw err;
  }
  for (const page of pages) {
    const sdp = await page.evaluate(() => window.chats3Debug.call().relay.pc.remoteDescription.sdp);
    assert.match(sdp, /a=rtpmap:\d+ rtx\/90000/, `${page.userName}: the relay negotiated RTX`);
    assert.match(sdp, /a=ssrc-group:FID \d+ \d+/, `${page.userName}: the relay sends an RTX stream beside each video`);
    assert.equal(await page.locator('#video-grid .tile').count(), 6, `${page.userName} shows six tiles`);
    for (const other of names) await page.locator('#video-grid .tile .name', { hasText: other }).first().waitFor();
  }
  await shot(pages[0], 'call-6-relay');
});

test('muting is still reflected in relay mode', async () => {
  const ada = await pages[0].evaluate(() => window.chats3Debug.state.me.userId);
  await pages[0].getByRole('button', { name: 'Mute' }).click();
  await pages[3].locator(`#video-grid .tile[data-user-id="${ada}"][data-audio="off"]`).waitFor({ timeout: 10000 });
  await pages[0].getByRole('button', { name: 'Unmute' }).click();
  await pages[3].locator(`#video-grid .tile[data-user-id="${ada}"][data-audio="on"]`).waitFor({ timeout: 10000 });
});

test('the only unmuted participant is named the active speaker by the relay and highlighted', async () => {
  const bo = await pages[1].evaluate(() => window.chats3Debug.state.me.userId);
  const others = pages.filter((_, i) => i !== 1);
  for (const page of others) await page.getByRole('button', { name: 'Mute' }).click();
  try {
    // With six pages on two cores (Chromium takes ~1.7 of them) the relay gets audio in bursts, up
    // to seconds late: loud packets from before the mutes still arrive, so the floor can take a
    // while to settle on Bo.
    for (const page of [pages[0], pages[4]]) await page.locator(`#video-grid .tile.speaking[data-user-id="${bo}"]`).waitFor({ timeout: 30000 });
  } catch (err) {
    for (const page of pages) {
      console.log(page.userName, JSON.stringify(await page.evaluate(() => {
        const call = window.chats3Debug.call();
        const a = call.local && call.local.getAudioTracks()[0];
        const sender = call.relay && call.relay.senders.audio;
        return [window.chats3Debug.state.me.userId.slice(0, 8), a && a.enabled, sender && sender.track === a, call.relay && [...call.relay.held.keys()], call.speaker && call.speaker.slice(0, 8)];
      })));
    }
    throw err;
  }
  assert.equal(await pages[0].locator('#video-grid .tile.speaking').count(), 1);
  // In relay mode the highlight comes from the relay, which reads the audio-level header extension.
  const ids = await Promise.all(pages.map((p) => p.evaluate(() => window.chats3Debug.state.me.userId.slice(0, 8))));
  console.log('users', JSON.stringify(names.map((n, i) => [n, ids[i]])));
  await poll(pages[4], (id) => {
    const call = window.chats3Debug.call();
    return { ok: call.serverSpeaker && call.speaker === id, serverSpeaker: call.serverSpeaker, speaker: call.speaker, events: window.chats3Debug.events().filter((e) => e.startsWith('call-speaker')).slice(-3) };
  }, bo, {
    timeout: 30000,
    what: 'a call-speaker event naming the unmuted participant',
  });
  for (const page of others) await page.getByRole('button', { name: 'Unmute' }).click();
});

test("an offer that crosses the relay's is answered, and the relay offers again (glare)", async () => {
  const [ada, fay] = [pages[0], pages[5]];
  // Ada holds back the relay's next offer, so that her own crosses it.
  await ada.evaluate(() => {
    const relay = window.chats3Debug.call().relay;
    const deliver = relay.onSignal.bind(relay);
    /** @type {any} */ (window).__glare = { deliver, held: null };
    relay.onSignal = (signal) => {
      const g = /** @type {any} */ (window).__glare;
      if (signal.type !== 'offer' || g.held) return deliver(signal);
      g.held = signal;
      return Promise.resolve();
    };
  });
  // Fay leaves: the relay offers everyone the end of her tracks.
  await fay.getByRole('button', { name: 'Leave call' }).click();
  await poll(ada, () => ({ ok: !!(/** @type {any} */ (window).__glare.held) }), null, { what: "the relay's offer" });
  // Ada offers; the held offer then arrives as it would have, while hers is out, and is ignored.
  await ada.evaluate(async () => {
    const relay = window.chats3Debug.call().relay;
    const g = /** @type {any} */ (window).__glare;
    relay.onSignal = g.deliver;
    const offering = relay.negotiate();
    relay.onSignal(g.held);
    await offering;
  });
  // The relay rolled its offer back, answered Ada's and offered again; Ada applied both.
  await poll(ada, () => {
    const relay = window.chats3Debug.call().relay;
    const h = relay.history.join(' | ');
    return { ok: relay.pc.signalingState === 'stable' && /offer in (?:stable \(making offer\)|have-local-offer).*answer in have-local-offer.*offer in stable/.test(h), state: relay.pc.signalingState, history: relay.history.slice(-12) };
  }, null, { what: 'the relay answering the crossing offer, then offering again' });
  await waitCall(ada, { mode: 'relay', pcs: 1, n: 4 });
  // And negotiation goes on: Fay comes back, and Ada gets her video.
  await fay.getByRole('button', { name: /Join call/ }).click();
  await fay.locator('#video-grid .tile.local').waitFor();
  await waitCall(ada, { mode: 'relay', pcs: 1, n: 5 });
  await waitCall(fay, { mode: 'relay', pcs: 1, n: 5 });
});

test('when the sixth and fifth leave, the call returns to a mesh without anyone re-joining', async () => {
  await pages[5].getByRole('button', { name: 'Leave call' }).click();
  await pages[4].getByRole('button', { name: 'Leave call' }).click();
  const rest = pages.slice(0, 4);
  // The relay holds the call for its 10 s dwell period, then the server switches back.
  try {
    for (const page of rest) await waitCall(page, { mode: 'mesh', pcs: 3, n: 3 });
  } catch (err) {
    const all = [];
    for (const page of rest) {
      all.push(`${page.userName} ${await page.evaluate(() => window.chats3Debug.state.me.userId.slice(0, 6))}: ${JSON.stringify(await page.evaluate(() => [...window.chats3Debug.call().peers.values()].map((p) => [p.userId.slice(0, 6), p.pc.signalingState, p.pc.iceConnectionState, p.pc.iceGatheringState, ...p.history])))}`);
      all.push(`  events: ${JSON.stringify((await page.evaluate(() => window.chats3Debug.events())).slice(-60))}`);
    }
    throw new Error(`${err.message}\n${all.join('\n')}`);
  }
  for (const page of rest) assert.equal(await page.locator('#video-grid .tile').count(), 4, `${page.userName} shows four tiles`);
  for (const page of pages.slice(4)) assert.equal(await page.evaluate(() => window.__livePeerConnections()), 0);
});
