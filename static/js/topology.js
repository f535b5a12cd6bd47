// @ts-check
// topology.js — the connections a call's media goes over, as the server last said (`call-mode`):
// a peer-to-peer mesh (one Peer per remote participant) for small calls, or one RelayPeer to the
// server's media relay past MESH_MAX. Switching drops one kind of connection and builds the other;
// local media and tiles stay, so the call goes on after a short freeze.
import { signal } from './events.js';
import { Peer } from './peer.js';
import { RelayPeer } from './relay-peer.js';

/** @typedef {import('./peer.js').InboundStats} InboundStats */

export class Topology {
  /** @param {import('./call.js').Call} call  the call these connections carry */
  constructor(call) {
    this.call = call;
    /** @type {'mesh' | 'relay'} */
    this.mode = 'mesh';
    /** @type {Map<string, Peer>} */
    this.peers = new Map(); // userId -> Peer (mesh mode)
    /** @type {RelayPeer | null} */
    this.relay = null; // relay mode, in a call
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.renderTimer = undefined; // relay mode: reports the size each tile is shown at
  }

  /**
   * Mesh: the connection to `userId`, made (with its tile) if there is none.
   * @param {string} userId
   * @returns {Peer}
   */
  ensurePeer(userId) {
    const { call } = this;
    let peer = this.peers.get(userId);
    if (peer) return peer;
    peer = new Peer({
      userId,
      polite: call.state.me.userId > userId,
      iceServers: call.iceServers,
      onTrack: (track, stream) => call.tiles.addRemote(userId, stream),
      onState: (s) => call.tiles.paintState(call.tiles.get(userId), s),
      onStuck: () => this.rebuildPeer(userId),
    });
    peer.attach(call.local);
    if (call.share.track) peer.replace('video', call.share.track);
    this.peers.set(userId, peer);
    call.tiles.addRemote(userId);
    call.tiles.paintMedia(call.tiles.get(userId), call.members.get(userId));
    return peer;
  }

  /** @param {string} userId */
  dropPeer(userId) {
    const peer = this.peers.get(userId);
    if (peer) peer.close();
    this.peers.delete(userId);
    if (this.mode === 'mesh') this.call.tiles.remove(userId);
  }

  /**
   * Both ends start over: a fresh call-join makes the other side drop its end and reply.
   * @param {string} userId
   */
  rebuildPeer(userId) {
    if (!this.call.inCall || this.mode !== 'mesh' || !this.peers.has(userId)) return;
    this.dropPeer(userId);
    signal('call-join', { media: this.call.media }, userId).catch(() => {});
  }

  /**
   * The server's `call-mode`: rebuilds the connections if we are in the call.
   * @param {'mesh' | 'relay'} mode
   * @returns {boolean} whether anything changed
   */
  setMode(mode) {
    if (mode === this.mode) return false;
    this.mode = mode;
    this.call.tiles.resetServer();
    if (!this.call.inCall) return false;
    if (mode === 'relay') {
      this.closePeers();
      this.startRelay();
    } else {
      this.stopRelay();
      // Everyone switches at once; perfect negotiation sorts out who offers.
      for (const userId of this.call.members.keys()) this.ensurePeer(userId);
    }
    return true;
  }

  startRelay() {
    const { call } = this;
    this.stopRelay();
    const relay = new RelayPeer({
      iceServers: call.iceServers,
      onStream: (userId, stream) => {
        if (userId === call.state.me.userId) return;
        call.tiles.relayed(userId, stream, call.members.get(userId));
      },
      onState: (s) => call.tiles.paintRemoteState(s),
      // A fresh connection: the relay replaces the old one (or, on another node, takes us in).
      onStuck: () => {
        if (this.relay === relay && call.inCall && this.mode === 'relay') this.startRelay();
      },
    });
    this.relay = relay;
    this.relay.attach(call.local);
    if (call.share.track) this.relay.replace('video', call.share.track);
    this.renderTimer = setInterval(() => this.reportRendered(), 2000);
    for (const userId of call.members.keys()) {
      if (!call.tiles.has(userId)) call.tiles.addRemote(userId);
    }
  }

  stopRelay() {
    clearInterval(this.renderTimer);
    if (!this.relay) return;
    this.relay.close();
    this.relay = null;
  }

  closePeers() {
    for (const peer of this.peers.values()) peer.close();
    this.peers.clear();
  }

  /** Every connection goes (we left the call). */
  close() {
    this.closePeers();
    this.stopRelay();
  }

  /** Relay mode: tells the relay the size each remote tile's video is shown at (0 when it is not shown). */
  reportRendered() {
    if (!this.relay) return;
    const sizes = [];
    for (const [userId, tile] of this.call.tiles.byId) {
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

  /**
   * Every connection our tracks go out on.
   * @returns {Array<Peer | RelayPeer>}
   */
  links() {
    return this.relay ? [this.relay] : [...this.peers.values()];
  }

  /**
   * Receive figures per remote participant (speaker detection, chats3Debug.getStats).
   * @returns {Promise<Record<string, InboundStats>>}
   */
  async stats() {
    if (this.relay) return this.relay.stats();
    /** @type {Record<string, InboundStats>} */
    const out = {};
    for (const [id, peer] of this.peers) out[id] = await peer.stats();
    return out;
  }
}
