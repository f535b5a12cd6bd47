// @ts-check
// call.js — the call: presence (call-join/leave/query), the events that drive it, and our media's
// state as the others see it. Its parts: topology.js (the mesh or relay connections the server
// picks), tiles.js (the video grid, the active speaker), devices.js (camera and microphone),
// screen.js (screen sharing) and recorder.js (recording).
import { signal } from './events.js';
import { authHeaders } from './api.js';
import { $ } from './dom.js';
import { Recorder } from './recorder.js';
import { Tiles } from './tiles.js';
import { Devices, describe } from './devices.js';
import { ScreenShare } from './screen.js';
import { Topology } from './topology.js';

/** @typedef {import('./types.js').ServerEvent} ServerEvent */
/** @typedef {import('./types.js').MediaState} MediaState */

/**
 * @typedef {object} CallHooks
 * @property {(members: Set<string>) => void} onMembers  who is in the call changed (ids, me included)
 * @property {(text: string, kind: string) => void} onBanner
 * @property {(kind?: string) => void} [clearBanner]
 */

export class Call {
  /**
   * @param {import('./types.js').RoomState} state
   * @param {CallHooks} hooks
   */
  constructor(state, hooks) {
    this.state = state;
    this.hooks = hooks;
    /** @type {RTCIceServer[]} */
    this.iceServers = [];
    this.inCall = false;
    this.joining = false;
    /** @type {Map<string, MediaState>} */
    this.members = new Map(); // userId -> media state (everyone in the call, from presence events)
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.speakerTimer = undefined;
    this.net = new Topology(this);
    this.tiles = new Tiles(state);
    /** @type {import('./devices.js').MediaHooks} */
    const media = {
      send: (kind, track) => Promise.all(this.net.links().map((p) => p.replace(kind, track))),
      changed: () => this.mediaChanged(),
      banner: (text, kind) => this.hooks.onBanner(text, kind),
    };
    this.devices = new Devices({ ...media, sharing: () => Boolean(this.share.track), showCamera: (s) => this.tiles.showCamera(s) });
    this.share = new ScreenShare(this.devices, this.tiles, media);
    this.recorder = new Recorder(this.tiles.grid, () => this.tiles.audioStreams(this.local), state);
    $('record-btn').addEventListener('click', () => this.toggleRecording());
    $('hangup-btn').addEventListener('click', () => this.leave());
    window.addEventListener('pagehide', () => this.leave({ unloading: true }));
  }

  // What room.js, chats3Debug and the tests read: our camera + microphone while in the call, our
  // media flags (as sent in call-join and media-state), the connections, the speaker highlighted
  // (and whether the relay named it).
  get local() { return this.devices.stream; }
  get media() { return this.devices.media; }
  get mode() { return this.net.mode; }
  get peers() { return this.net.peers; }
  get relay() { return this.net.relay; }
  get speaker() { return this.tiles.speaker; }
  get serverSpeaker() { return this.tiles.serverSpeaker; }

  /** @param {{ iceServers?: RTCIceServer[] }} [config]  from client-config */
  configure({ iceServers } = {}) {
    if (Array.isArray(iceServers)) this.iceServers = iceServers;
  }

  // ---- joining and leaving ----

  async join() {
    if (this.inCall || this.joining) return;
    this.joining = true;
    const local = await this.devices.open();
    this.joining = false;
    this.inCall = true;
    $('call').hidden = false;
    this.tiles.paintMedia(this.tiles.add('me', this.state.me.displayName, local, true), this.media);
    this.paintControls();
    // The server answers our call-join with the call's mode (targeted or broadcast `call-mode`)
    // before anyone's reply reaches us; until then assume the mesh.
    this.net.mode = 'mesh';
    signal('call-join', { media: this.media }).catch(() => {});
    this.hooks.onMembers(this.memberList());
    this.devices.fill();
    this.speakerTimer = setInterval(() => this.pickSpeaker().catch(() => {}), 700);
  }

  /** @param {{ unloading?: boolean }} [options]  unloading: the page is going away */
  leave({ unloading = false } = {}) {
    if (!this.inCall) return;
    this.inCall = false;
    if (this.recorder.active) this.recorder.stop();
    clearInterval(this.speakerTimer);
    if (unloading) {
      // Page is going away: a keepalive fetch survives the unload, the ordered queue would not.
      fetch('/api/v1/signaling', {
        method: 'POST', keepalive: true, credentials: 'same-origin',
        headers: { 'content-type': 'application/json', ...authHeaders() },
        body: JSON.stringify({ type: 'call-leave', data: {} }),
      }).catch(() => {});
    } else {
      signal('call-leave', {}).catch(() => {});
    }
    this.net.close();
    this.devices.close();
    this.share.release();
    this.tiles.clear();
    $('call').hidden = true;
    this.hooks.onMembers(this.memberList());
  }

  /** @returns {Set<string>} who is in the call, me included */
  memberList() {
    const ids = new Set(this.members.keys());
    if (this.inCall) ids.add(this.state.me.userId);
    return ids;
  }

  // ---- events from the stream ----

  /** @param {ServerEvent} event */
  handle(event) {
    const from = /** @type {string} */ (event.fromUserId);
    const data = event.data || {};
    if (from === this.state.me.userId) return;
    const relay = this.net.mode === 'relay';
    switch (event.type) {
      case 'call-mode':
        if (this.net.setMode(data.mode === 'relay' ? 'relay' : 'mesh')) this.hooks.onMembers(this.memberList());
        break;
      case 'relay-signal':
        if (this.net.relay) this.net.relay.onSignal(data);
        return;
      case 'call-speaker': {
        // From the relay's audio levels: the dominant speaker, and (last-N) whose video it sends.
        if (!this.inCall || !relay) return;
        const d = /** @type {import('./types.js').CallSpeakerData} */ (data);
        this.tiles.followServer(typeof d.speaker === 'string' ? d.speaker : null, Array.isArray(d.forwarded) ? d.forwarded : null);
        return;
      }
      case 'call-join': {
        const d = /** @type {import('./types.js').CallJoinData} */ (data);
        this.members.set(from, d.media || {});
        if (this.inCall && relay) {
          // Media flows through the relay; just let a newcomer know we are here.
          if (!d.reply) this.reply(from);
          if (!this.tiles.has(from)) this.tiles.addRemote(from);
        } else if (this.inCall) {
          if (!d.reply) {
            // A (re)joining peer: drop any stale connection, tell them we are here; they offer.
            this.net.dropPeer(from);
            this.reply(from);
          } else {
            this.net.ensurePeer(from);
          }
        }
        this.tiles.paintMedia(this.tiles.get(from), d.media);
        break;
      }
      case 'call-query':
        // Sent by a page that just loaded: whatever call it had before is gone.
        this.members.delete(from);
        this.net.dropPeer(from);
        if (this.inCall) this.reply(from);
        break;
      case 'call-leave':
      case 'end-call':
      case 'peer-leave':
        this.members.delete(from);
        this.net.dropPeer(from);
        this.tiles.remove(from);
        break;
      case 'media-state':
        if (this.members.has(from)) this.members.set(from, data);
        this.tiles.paintMedia(this.tiles.get(from), data);
        break;
      case 'offer':
      case 'answer':
        if (!this.inCall || relay) return;
        if (event.type === 'offer') this.members.set(from, this.members.get(from) || {});
        this.net.ensurePeer(from).onDescription({ type: data.type || event.type, sdp: data.sdp }).catch((e) => console.warn(e));
        break;
      case 'ice-candidate':
        if (!this.inCall || relay) return;
        this.net.ensurePeer(from).onCandidate(data);
        break;
      default:
        return;
    }
    this.hooks.onMembers(this.memberList());
  }

  /**
   * Tells one participant that we are in the call (they answered nothing yet, or asked).
   * @param {string} userId
   */
  reply(userId) {
    signal('call-join', { media: this.media, reply: true }, userId).catch(() => {});
  }

  // ---- our media ----

  mediaChanged() {
    this.paintControls();
    this.tiles.paintMedia(this.tiles.get('me'), { ...this.media, video: this.media.video || this.media.screen });
    if (this.inCall) signal('media-state', { ...this.media }).catch(() => {});
  }

  paintControls() {
    this.devices.paint();
    this.share.paint();
    const rec = /** @type {HTMLButtonElement} */ ($('record-btn'));
    rec.disabled = typeof MediaRecorder === 'undefined';
    rec.classList.add('recording');
    rec.setAttribute('aria-pressed', String(this.recorder.active));
    rec.textContent = this.recorder.active ? 'Stop recording' : 'Record';
  }

  async toggleRecording() {
    if (this.recorder.active) this.recorder.stop();
    else {
      try {
        this.recorder.start();
      } catch (err) {
        this.hooks.onBanner(`Recording is not available (${describe(err)}).`, 'warn');
      }
    }
    this.paintControls();
  }

  /** Highlights the remote participant whose received audio is loudest (and not silence). */
  async pickSpeaker() {
    if (!this.inCall) return;
    const stats = await this.stats();
    this.tiles.pickSpeaker(stats, this.members, this.net.mode === 'relay');
  }

  /** Receive figures per remote participant (speaker detection, chats3Debug.getStats). */
  stats() {
    return this.net.stats();
  }
}
