// call.js — the call: presence (call-join/leave/query), local media and its controls (mute,
// camera, devices, screen share), the video grid, and the topology the server picks (`call-mode`):
// a peer-to-peer mesh (one Peer per remote participant) for small calls, one RelayPeer to the
// server's media relay past MESH_MAX. Switching drops one kind of connection and builds the
// other; local media and tiles stay, so the call goes on after a short freeze.
import { signal } from './events.js';
import { authHeaders } from './api.js';
import { el, $, avatar } from './dom.js';
import { Peer } from './peer.js';
import { RelayPeer } from './relay-peer.js';
import { Recorder } from './recorder.js';

export class Call {
  constructor(state, hooks) {
    this.state = state;
    this.hooks = hooks; // {onMembers(members), onBanner(text, kind), clearBanner()}
    this.iceServers = [];
    this.inCall = false;
    this.joining = false;
    this.local = null; // MediaStream (camera + mic)
    this.screen = null; // MediaStreamTrack while sharing
    this.media = { audio: false, video: false, screen: false };
    this.peers = new Map(); // userId -> Peer (mesh mode)
    this.mode = 'mesh'; // 'mesh' | 'relay', as the server last said
    this.relay = null; // RelayPeer (relay mode, in a call)
    this.members = new Map(); // userId -> media state (everyone in the call, from presence events)
    this.tiles = new Map(); // userId ('me' for local) -> tile element
    this.grid = $('video-grid');
    this.speakerTimer = null;
    this.speaker = null; // userId highlighted as the active speaker
    this.serverSpeaker = false; // in relay mode the server names the speaker (`call-speaker`)
    this.recorder = new Recorder(this.grid, () => this.audioStreams(), state);
    this.bindControls();
    window.addEventListener('pagehide', () => this.leave({ unloading: true }));
  }

  configure({ iceServers } = {}) {
    if (Array.isArray(iceServers)) this.iceServers = iceServers;
  }

  bindControls() {
    $('mic-btn').addEventListener('click', () => this.setAudio(!this.media.audio));
    $('cam-btn').addEventListener('click', () => this.setVideo(!this.media.video));
    $('screen-btn').addEventListener('click', () => (this.screen ? this.stopShare() : this.startShare()));
    $('record-btn').addEventListener('click', () => this.toggleRecording());
    $('hangup-btn').addEventListener('click', () => this.leave());
    $('devices-btn').addEventListener('click', () => {
      const panel = $('devices');
      panel.hidden = !panel.hidden;
      $('devices-btn').setAttribute('aria-expanded', String(!panel.hidden));
      if (!panel.hidden) this.fillDevices();
    });
    $('mic-select').addEventListener('change', (e) => this.switchDevice('audio', e.target.value));
    $('cam-select').addEventListener('change', (e) => this.switchDevice('video', e.target.value));
  }

  // ---- joining and leaving ----

  async join() {
    if (this.inCall || this.joining) return;
    this.joining = true;
    this.local = await this.getMedia();
    this.joining = false;
    this.inCall = true;
    $('call').hidden = false;
    this.addTile('me', this.state.me.displayName, this.local, true);
    this.paintControls();
    // The server answers our call-join with the call's mode (targeted or broadcast `call-mode`)
    // before anyone's reply reaches us; until then assume the mesh.
    this.mode = 'mesh';
    signal('call-join', { media: this.media }).catch(() => {});
    this.hooks.onMembers(this.memberList());
    this.fillDevices();
    this.speakerTimer = setInterval(() => this.pickSpeaker().catch(() => {}), 700);
  }

  /** Camera + mic; falls back to mic only, then to receive-only, and says so. */
  async getMedia() {
    const video = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 } };
    const attempts = [{ audio: true, video }, { audio: true, video: false }, { audio: false, video }];
    let lastErr = null;
    for (const constraints of attempts) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia(constraints);
        this.media.audio = stream.getAudioTracks().length > 0;
        this.media.video = stream.getVideoTracks().length > 0;
        if (!this.media.video || !this.media.audio) {
          this.hooks.onBanner(`${this.media.video ? 'Microphone' : 'Camera'} unavailable (${describe(lastErr)}). You joined without it.`, 'warn');
        }
        return stream;
      } catch (err) {
        lastErr = err;
      }
    }
    this.media.audio = false;
    this.media.video = false;
    this.hooks.onBanner(`Camera and microphone are unavailable (${describe(lastErr)}). You can still see and hear others. Allow access in the browser's site settings and rejoin the call.`, 'error');
    return new MediaStream();
  }

  leave({ unloading = false } = {}) {
    if (!this.inCall) return;
    this.inCall = false;
    if (this.recorder.active) this.recorder.stop();
    clearInterval(this.speakerTimer);
    this.speaker = null;
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
    for (const peer of this.peers.values()) peer.close();
    this.peers.clear();
    this.stopRelay();
    for (const t of this.local ? this.local.getTracks() : []) t.stop();
    if (this.screen) this.screen.stop();
    this.screen = null;
    this.local = null;
    this.media = { audio: false, video: false, screen: false };
    for (const id of [...this.tiles.keys()]) this.removeTile(id);
    $('call').hidden = true;
    this.hooks.onMembers(this.memberList());
  }

  memberList() {
    const ids = new Set(this.members.keys());
    if (this.inCall) ids.add(this.state.me.userId);
    return ids;
  }

  // ---- events from the stream ----

  handle(event) {
    const from = event.fromUserId;
    const data = event.data || {};
    if (from === this.state.me.userId) return;
    switch (event.type) {
      case 'call-mode':
        this.setMode(data.mode === 'relay' ? 'relay' : 'mesh');
        break;
      case 'relay-signal':
        if (this.relay) this.relay.onSignal(data);
        return;
      case 'call-speaker':
        // From the relay's audio levels: the dominant speaker, and (last-N) whose video it sends.
        if (!this.inCall || this.mode !== 'relay') return;
        this.serverSpeaker = true;
        this.forwarded = Array.isArray(data.forwarded) ? data.forwarded : null;
        this.setSpeaker(typeof data.speaker === 'string' ? data.speaker : null);
        for (const [id, tile] of this.tiles) this.paintForwarded(id, tile);
        return;
      case 'call-join': {
        this.members.set(from, data.media || {});
        if (this.inCall && this.mode === 'relay') {
          // Media flows through the relay; just let a newcomer know we are here.
          if (!data.reply) signal('call-join', { media: this.media, reply: true }, from).catch(() => {});
          if (!this.tiles.has(from)) this.addTile(from, this.state.names.get(from) || 'Guest', null, false);
        } else if (this.inCall) {
          if (!data.reply) {
            // A (re)joining peer: drop any stale connection, tell them we are here; they offer.
            this.dropPeer(from);
            signal('call-join', { media: this.media, reply: true }, from).catch(() => {});
          } else {
            this.ensurePeer(from);
          }
        }
        this.updateRemoteMedia(from, data.media);
        break;
      }
      case 'call-query':
        // Sent by a page that just loaded: whatever call it had before is gone.
        this.members.delete(from);
        this.dropPeer(from);
        if (this.inCall) signal('call-join', { media: this.media, reply: true }, from).catch(() => {});
        break;
      case 'call-leave':
      case 'end-call':
      case 'peer-leave':
        this.members.delete(from);
        this.dropPeer(from);
        this.removeTile(from);
        break;
      case 'media-state':
        if (this.members.has(from)) this.members.set(from, data);
        this.updateRemoteMedia(from, data);
        break;
      case 'offer':
      case 'answer':
        if (!this.inCall || this.mode === 'relay') return;
        if (event.type === 'offer') this.members.set(from, this.members.get(from) || {});
        this.ensurePeer(from).onDescription({ type: data.type || event.type, sdp: data.sdp }).catch((e) => console.warn(e));
        break;
      case 'ice-candidate':
        if (!this.inCall || this.mode === 'relay') return;
        this.ensurePeer(from).onCandidate(data);
        break;
      default:
        return;
    }
    this.hooks.onMembers(this.memberList());
  }

  ensurePeer(userId) {
    let peer = this.peers.get(userId);
    if (peer) return peer;
    peer = new Peer({
      userId,
      polite: this.state.me.userId > userId,
      iceServers: this.iceServers,
      onTrack: (track, stream) => this.addTile(userId, this.state.names.get(userId) || 'Guest', stream, false),
      onState: (s) => paintTileState(this.tiles.get(userId), s),
      onStuck: () => this.rebuildPeer(userId),
    });
    peer.attach(this.local);
    if (this.screen) peer.replace('video', this.screen);
    this.peers.set(userId, peer);
    this.addTile(userId, this.state.names.get(userId) || 'Guest', null, false);
    this.updateRemoteMedia(userId, this.members.get(userId));
    return peer;
  }

  dropPeer(userId) {
    const peer = this.peers.get(userId);
    if (peer) peer.close();
    this.peers.delete(userId);
    if (this.mode === 'mesh') this.removeTile(userId);
  }

  /** Both ends start over: a fresh call-join makes the other side drop its end and reply. */
  rebuildPeer(userId) {
    if (!this.inCall || this.mode !== 'mesh' || !this.peers.has(userId)) return;
    this.dropPeer(userId);
    signal('call-join', { media: this.media }, userId).catch(() => {});
  }

  // ---- topology ----

  setMode(mode) {
    if (mode === this.mode) return;
    this.mode = mode;
    this.serverSpeaker = false;
    this.forwarded = null;
    for (const [id, tile] of this.tiles) this.paintForwarded(id, tile);
    if (!this.inCall) return;
    if (mode === 'relay') {
      for (const peer of this.peers.values()) peer.close();
      this.peers.clear();
      this.startRelay();
    } else {
      this.stopRelay();
      // Everyone switches at once; perfect negotiation sorts out who offers.
      for (const userId of this.members.keys()) this.ensurePeer(userId);
    }
    this.hooks.onMembers(this.memberList());
  }

  startRelay() {
    this.stopRelay();
    this.relay = new RelayPeer({
      iceServers: this.iceServers,
      onStream: (userId, stream) => {
        if (userId === this.state.me.userId) return;
        const tile = this.addTile(userId, this.state.names.get(userId) || 'Guest', stream, false);
        this.updateRemoteMedia(userId, this.members.get(userId));
        this.paintForwarded(userId, tile);
        tile.querySelector('.tile-state').hidden = true;
      },
      onState: (s) => {
        for (const [id, tile] of this.tiles) if (id !== 'me') paintTileState(tile, s);
      },
    });
    this.relay.attach(this.local);
    if (this.screen) this.relay.replace('video', this.screen);
    this.renderTimer = setInterval(() => this.reportRendered(), 2000);
    for (const userId of this.members.keys()) {
      if (!this.tiles.has(userId)) this.addTile(userId, this.state.names.get(userId) || 'Guest', null, false);
    }
  }

  stopRelay() {
    clearInterval(this.renderTimer);
    if (!this.relay) return;
    this.relay.close();
    this.relay = null;
  }

  /** Relay mode: the size each remote tile's video is shown at (0 when it is not shown). */
  reportRendered() {
    if (!this.relay) return;
    const sizes = [];
    for (const [userId, tile] of this.tiles) {
      if (userId === 'me') continue;
      const video = tile.querySelector('video');
      const shown = video && tile.dataset.video !== 'off' && tile.dataset.forwarded !== 'no';
      const scale = window.devicePixelRatio || 1;
      sizes.push({
        publisher: userId,
        width: shown ? Math.min(65535, Math.round(video.clientWidth * scale)) : 0,
        height: shown ? Math.min(65535, Math.round(video.clientHeight * scale)) : 0,
      });
    }
    this.relay.reportRendered(sizes);
  }

  /** Every connection our tracks go out on. */
  links() {
    return this.relay ? [this.relay] : [...this.peers.values()];
  }

  // ---- local media controls ----

  setAudio(on) {
    for (const t of this.local ? this.local.getAudioTracks() : []) t.enabled = on;
    this.media.audio = on && Boolean(this.local && this.local.getAudioTracks().length);
    this.mediaChanged();
  }

  setVideo(on) {
    for (const t of this.local ? this.local.getVideoTracks() : []) t.enabled = on;
    this.media.video = on && Boolean(this.local && this.local.getVideoTracks().length);
    this.mediaChanged();
  }

  mediaChanged() {
    this.paintControls();
    this.updateTileMedia(this.tiles.get('me'), { ...this.media, video: this.media.video || this.media.screen });
    if (this.inCall) signal('media-state', { ...this.media }).catch(() => {});
  }

  paintControls() {
    const hasAudio = Boolean(this.local && this.local.getAudioTracks().length);
    const hasVideo = Boolean(this.local && this.local.getVideoTracks().length);
    const mic = $('mic-btn');
    mic.disabled = !hasAudio;
    mic.setAttribute('aria-pressed', String(hasAudio && !this.media.audio));
    mic.textContent = hasAudio && !this.media.audio ? 'Unmute' : 'Mute';
    const cam = $('cam-btn');
    cam.disabled = !hasVideo;
    cam.setAttribute('aria-pressed', String(hasVideo && !this.media.video));
    cam.textContent = hasVideo && !this.media.video ? 'Camera on' : 'Camera off';
    const scr = $('screen-btn');
    scr.disabled = !navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia;
    scr.setAttribute('aria-pressed', String(Boolean(this.screen)));
    scr.textContent = this.screen ? 'Stop sharing' : 'Share screen';
    const rec = $('record-btn');
    rec.disabled = typeof MediaRecorder === 'undefined';
    rec.classList.add('recording');
    rec.setAttribute('aria-pressed', String(this.recorder.active));
    rec.textContent = this.recorder.active ? 'Stop recording' : 'Record';
  }

  async startShare() {
    let track;
    try {
      const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
      track = stream.getVideoTracks()[0];
    } catch (err) {
      if (err && err.name !== 'NotAllowedError') this.hooks.onBanner(`Screen sharing failed (${describe(err)}).`, 'warn');
      return;
    }
    if (!track) return;
    track.contentHint = 'detail';
    this.screen = track;
    track.addEventListener('ended', () => this.stopShare());
    await Promise.all(this.links().map((p) => p.replace('video', track)));
    this.media.screen = true;
    const tile = this.tiles.get('me');
    tile.classList.add('screen');
    tile.querySelector('video').srcObject = new MediaStream([track]);
    this.mediaChanged();
  }

  async stopShare() {
    if (!this.screen) return;
    const track = this.screen;
    this.screen = null;
    track.stop();
    const cam = this.local ? this.local.getVideoTracks()[0] || null : null;
    await Promise.all(this.links().map((p) => p.replace('video', cam)));
    this.media.screen = false;
    const tile = this.tiles.get('me');
    if (tile) {
      tile.classList.remove('screen');
      tile.querySelector('video').srcObject = this.local;
    }
    this.mediaChanged();
  }

  async fillDevices() {
    if (!navigator.mediaDevices?.enumerateDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices();
    const current = {
      audio: this.local?.getAudioTracks()[0]?.getSettings().deviceId,
      video: this.local?.getVideoTracks()[0]?.getSettings().deviceId,
    };
    for (const [kind, id] of [['audioinput', 'mic-select'], ['videoinput', 'cam-select']]) {
      const select = $(id);
      select.replaceChildren();
      const list = devices.filter((d) => d.kind === kind);
      list.forEach((d, i) => {
        const opt = el('option', { value: d.deviceId, text: d.label || `${kind === 'audioinput' ? 'Microphone' : 'Camera'} ${i + 1}` });
        if (d.deviceId === current[kind === 'audioinput' ? 'audio' : 'video']) opt.selected = true;
        select.append(opt);
      });
      select.disabled = list.length === 0;
    }
  }

  async switchDevice(kind, deviceId) {
    if (!this.local) return;
    let track;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ [kind]: { deviceId: { exact: deviceId } } });
      track = stream.getTracks()[0];
    } catch (err) {
      this.hooks.onBanner(`Could not switch ${kind === 'audio' ? 'microphone' : 'camera'} (${describe(err)}).`, 'warn');
      return;
    }
    const old = kind === 'audio' ? this.local.getAudioTracks()[0] : this.local.getVideoTracks()[0];
    track.enabled = old ? old.enabled : true;
    if (old) {
      this.local.removeTrack(old);
      old.stop();
    }
    this.local.addTrack(track);
    if (!(kind === 'video' && this.screen)) await Promise.all(this.links().map((p) => p.replace(kind, track)));
    this.media[kind] = track.enabled;
    if (kind === 'video' && !this.screen) this.tiles.get('me').querySelector('video').srcObject = this.local;
    this.mediaChanged();
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

  audioStreams() {
    const out = [];
    if (this.local && this.local.getAudioTracks().length) out.push(this.local);
    for (const tile of this.tiles.values()) {
      const s = tile.querySelector('video').srcObject;
      if (s && s !== this.local && s.getAudioTracks().length) out.push(s);
    }
    return out;
  }

  // ---- the grid ----

  addTile(id, name, stream, isLocal) {
    let tile = this.tiles.get(id);
    if (!tile) {
      const video = el('video', { autoplay: true, playsinline: true });
      video.muted = isLocal; // never play our own microphone back
      tile = el('div', { class: `tile${isLocal ? ' local' : ''}`, dataset: { userId: isLocal ? this.state.me.userId : id, video: 'on', audio: 'on' } },
        video,
        el('div', { class: 'tile-placeholder' }, avatar(isLocal ? this.state.me.userId : id, name, this.state.avatars.get(isLocal ? this.state.me.userId : id))),
        el('div', { class: 'tile-label' },
          el('span', { class: 'name', text: isLocal ? `${name} (you)` : name }),
          el('span', { class: 'tile-muted', role: 'img', 'aria-label': 'microphone muted', text: '🔇' })),
        el('div', { class: 'tile-state', text: 'Connecting…', hidden: isLocal }));
      this.tiles.set(id, tile);
      if (isLocal) this.grid.prepend(tile);
      else this.grid.append(tile);
      this.grid.dataset.count = String(this.tiles.size);
    }
    if (stream) {
      const video = tile.querySelector('video');
      if (video.srcObject !== stream) video.srcObject = stream;
      video.play().catch(() => {});
    }
    if (isLocal) this.updateTileMedia(tile, this.media);
    return tile;
  }

  removeTile(id) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    tile.querySelector('video').srcObject = null;
    tile.remove();
    this.tiles.delete(id);
    this.grid.dataset.count = String(this.tiles.size);
  }

  updateRemoteMedia(userId, media) {
    this.updateTileMedia(this.tiles.get(userId), media);
  }

  updateTileMedia(tile, media) {
    if (!tile || !media) return;
    tile.dataset.audio = media.audio === false ? 'off' : 'on';
    tile.dataset.video = media.video === false && !media.screen ? 'off' : 'on';
    tile.dataset.screen = media.screen ? 'on' : 'off';
  }

  /** Highlights the remote participant whose received audio is loudest (and not silence). */
  async pickSpeaker() {
    if (!this.inCall) return;
    let best = null;
    let level = SPEAKING_LEVEL;
    for (const s of Object.values(await this.stats())) {
      if (s.audioLevel > level && this.members.get(s.userId)?.audio !== false) {
        level = s.audioLevel;
        best = s.userId;
      }
    }
    const now = Date.now();
    if (best) this.spokeAt = now;
    // Pauses between words do not move the highlight: keep it for 2 s of silence.
    if (!best && now - (this.spokeAt || 0) < 2000) return;
    if (this.mode === 'relay' && this.serverSpeaker) return;
    this.setSpeaker(best);
  }

  setSpeaker(userId) {
    if (userId === this.speaker) return;
    this.tiles.get(this.speaker)?.classList.remove('speaking');
    this.speaker = userId;
    this.tiles.get(userId)?.classList.add('speaking');
  }

  /** Under the relay's last-N a participant outside the recent speakers shows its avatar, not a frozen frame. */
  paintForwarded(userId, tile) {
    if (userId === 'me') return;
    tile.dataset.forwarded = this.forwarded && !this.forwarded.includes(userId) ? 'no' : 'yes';
  }

  /** Receive figures per remote participant (speaker detection, chats3Debug.getStats). */
  async stats() {
    if (this.relay) return this.relay.stats();
    const out = {};
    for (const [id, peer] of this.peers) out[id] = await peer.stats();
    return out;
  }
}

/** Received audio level (0..1, RTCInboundRtpStreamStats.audioLevel) above which someone is speaking. */
const SPEAKING_LEVEL = 0.02;

/** A remote tile's connection label for a peer connection state. */
function paintTileState(tile, state) {
  if (!tile) return;
  const label = tile.querySelector('.tile-state');
  label.textContent = state === 'connected' ? '' : state === 'failed' || state === 'disconnected' ? 'Reconnecting…' : 'Connecting…';
  label.hidden = state === 'connected';
}

function describe(err) {
  if (!err) return 'unknown error';
  if (err.name === 'NotAllowedError') return 'permission denied';
  if (err.name === 'NotFoundError') return 'no device found';
  if (err.name === 'NotReadableError') return 'device is busy';
  return err.message || err.name || String(err);
}

