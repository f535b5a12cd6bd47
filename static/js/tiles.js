// @ts-check
// tiles.js — the call's video grid: one tile per participant ('me' for our own) with its video or,
// when that is off (or, under the relay's last-N, not forwarded), the avatar; its connection label;
// and the active-speaker highlight, from received audio levels or, in relay mode, from the server.
import { el, $, avatar } from './dom.js';

/** @typedef {import('./types.js').MediaState} MediaState */
/** @typedef {import('./peer.js').InboundStats} InboundStats */

/** Received audio level (0..1, RTCInboundRtpStreamStats.audioLevel) above which someone is speaking. */
const SPEAKING_LEVEL = 0.02;

/** @param {HTMLElement} tile */
const videoOf = (tile) => /** @type {HTMLVideoElement} */ (tile.querySelector('video'));

export class Tiles {
  /** @param {import('./types.js').RoomState} state */
  constructor(state) {
    this.state = state;
    this.grid = $('video-grid');
    /** @type {Map<string, HTMLElement>} */
    this.byId = new Map(); // userId ('me' for local) -> tile element
    /** @type {string | null} */
    this.speaker = null; // userId highlighted as the active speaker
    this.spokeAt = 0; // when a remote participant was last heard speaking (ms)
    this.serverSpeaker = false; // in relay mode the server names the speaker (`call-speaker`)
    /** @type {string[] | null} */
    this.forwarded = null; // relay last-N: whose video the relay sends us (null: everyone's)
  }

  /** @param {string} id */
  get(id) {
    return this.byId.get(id);
  }

  /** @param {string} id */
  has(id) {
    return this.byId.has(id);
  }

  /**
   * The tile of `id`, made if there is none; shows `stream` in it when given.
   * @param {string} id  a user id, or 'me'
   * @param {string} name
   * @param {MediaStream | null} stream
   * @param {boolean} isLocal
   * @returns {HTMLElement}
   */
  add(id, name, stream, isLocal) {
    let tile = this.byId.get(id);
    if (!tile) {
      const userId = isLocal ? this.state.me.userId : id;
      const video = el('video', { autoplay: true, playsinline: true });
      video.muted = isLocal; // never play our own microphone back
      tile = el('div', { class: `tile${isLocal ? ' local' : ''}`, dataset: { userId, video: 'on', audio: 'on' } },
        video,
        el('div', { class: 'tile-placeholder' }, avatar(userId, name, this.state.avatars.get(userId))),
        el('div', { class: 'tile-label' },
          el('span', { class: 'name', text: isLocal ? `${name} (you)` : name }),
          el('span', { class: 'tile-muted', role: 'img', 'aria-label': 'microphone muted', text: '🔇' })),
        el('div', { class: 'tile-state', text: 'Connecting…', hidden: isLocal }));
      this.byId.set(id, tile);
      if (isLocal) this.grid.prepend(tile);
      else this.grid.append(tile);
      this.grid.dataset.count = String(this.byId.size);
    }
    if (stream) {
      const video = videoOf(tile);
      if (video.srcObject !== stream) video.srcObject = stream;
      video.play().catch(() => {});
    }
    return tile;
  }

  /**
   * A remote participant's tile, named as the room knows them.
   * @param {string} userId
   * @param {MediaStream | null} [stream]
   */
  addRemote(userId, stream = null) {
    return this.add(userId, this.state.names.get(userId) || 'Guest', stream, false);
  }

  /**
   * Relay mode: a publisher's tracks arrived; the relay connection's state stands for theirs.
   * @param {string} userId
   * @param {MediaStream} stream
   * @param {MediaState | undefined} media
   */
  relayed(userId, stream, media) {
    const tile = this.addRemote(userId, stream);
    this.paintMedia(tile, media);
    this.paintForwarded(userId, tile);
    /** @type {HTMLElement} */ (tile.querySelector('.tile-state')).hidden = true;
  }

  /** @param {string} id */
  remove(id) {
    const tile = this.byId.get(id);
    if (!tile) return;
    videoOf(tile).srcObject = null;
    tile.remove();
    this.byId.delete(id);
    this.grid.dataset.count = String(this.byId.size);
  }

  /** Every tile goes (we left the call). */
  clear() {
    this.speaker = null;
    for (const id of [...this.byId.keys()]) this.remove(id);
  }

  /**
   * What a tile shows: the muted sign, the avatar instead of video, the screen-share layout.
   * @param {HTMLElement | undefined} tile
   * @param {MediaState | undefined} media
   */
  paintMedia(tile, media) {
    if (!tile || !media) return;
    tile.dataset.audio = media.audio === false ? 'off' : 'on';
    tile.dataset.video = media.video === false && !media.screen ? 'off' : 'on';
    tile.dataset.screen = media.screen ? 'on' : 'off';
  }

  /**
   * A remote tile's connection label for a peer connection state (mesh: one peer's).
   * @param {HTMLElement | undefined} tile
   * @param {RTCPeerConnectionState} state
   */
  paintState(tile, state) {
    if (!tile) return;
    const label = /** @type {HTMLElement} */ (tile.querySelector('.tile-state'));
    label.textContent = state === 'connected' ? '' : state === 'failed' || state === 'disconnected' ? 'Reconnecting…' : 'Connecting…';
    label.hidden = state === 'connected';
  }

  /**
   * Relay mode: the one connection's state is every remote tile's.
   * @param {RTCPeerConnectionState} state
   */
  paintRemoteState(state) {
    for (const [id, tile] of this.byId) if (id !== 'me') this.paintState(tile, state);
  }

  /**
   * Our own tile shows the shared screen, or the camera again.
   * @param {MediaStreamTrack} track
   */
  showScreen(track) {
    const tile = /** @type {HTMLElement} */ (this.byId.get('me'));
    tile.classList.add('screen');
    videoOf(tile).srcObject = new MediaStream([track]);
  }

  /** @param {MediaStream | null} stream  our camera and microphone */
  showCamera(stream) {
    const tile = this.byId.get('me');
    if (!tile) return;
    tile.classList.remove('screen');
    videoOf(tile).srcObject = stream;
  }

  /**
   * A `call-speaker` from the relay: the server picks the speaker and whose video it forwards.
   * @param {string | null} speaker
   * @param {string[] | null} forwarded
   */
  followServer(speaker, forwarded) {
    this.serverSpeaker = true;
    this.forwarded = forwarded;
    this.setSpeaker(speaker);
    this.paintAllForwarded();
  }

  /** The topology changed: speaker and forwarding go back to our own view. */
  resetServer() {
    this.serverSpeaker = false;
    this.forwarded = null;
    this.paintAllForwarded();
  }

  /**
   * Highlights the remote participant whose received audio is loudest (and not silence).
   * @param {Record<string, InboundStats>} stats  per remote participant
   * @param {Map<string, MediaState>} members  who is in the call, with their media
   * @param {boolean} relay  in relay mode (where the server's choice, once heard, wins)
   */
  pickSpeaker(stats, members, relay) {
    /** @type {string | null} */
    let best = null;
    let level = SPEAKING_LEVEL;
    for (const s of Object.values(stats)) {
      if (s.audioLevel > level && members.get(s.userId)?.audio !== false) {
        level = s.audioLevel;
        best = s.userId;
      }
    }
    const now = Date.now();
    if (best) this.spokeAt = now;
    // Pauses between words do not move the highlight: keep it for 2 s of silence.
    if (!best && now - (this.spokeAt || 0) < 2000) return;
    if (relay && this.serverSpeaker) return;
    this.setSpeaker(best);
  }

  /** @param {string | null} userId */
  setSpeaker(userId) {
    if (userId === this.speaker) return;
    if (this.speaker !== null) this.byId.get(this.speaker)?.classList.remove('speaking');
    this.speaker = userId;
    if (userId !== null) this.byId.get(userId)?.classList.add('speaking');
  }

  paintAllForwarded() {
    for (const [id, tile] of this.byId) this.paintForwarded(id, tile);
  }

  /**
   * Under the relay's last-N a participant outside the recent speakers shows its avatar, not a frozen frame.
   * @param {string} userId
   * @param {HTMLElement} tile
   */
  paintForwarded(userId, tile) {
    if (userId === 'me') return;
    tile.dataset.forwarded = this.forwarded && !this.forwarded.includes(userId) ? 'no' : 'yes';
  }

  /**
   * Every stream with audio to record: ours and each tile's.
   * @param {MediaStream | null} local
   * @returns {MediaStream[]}
   */
  audioStreams(local) {
    const out = [];
    if (local && local.getAudioTracks().length) out.push(local);
    for (const tile of this.byId.values()) {
      const s = /** @type {MediaStream | null} */ (videoOf(tile).srcObject);
      if (s && s !== local && s.getAudioTracks().length) out.push(s);
    }
    return out;
  }
}
